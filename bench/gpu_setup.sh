# What a bare GPU machine needs beyond the working tree, in two modes.
#
#   bash bench/gpu_setup.sh wheels       # HERE, with network: download into .whl/ (git-ignored)
#                                        # the wheels the GPU image lacks, for its Python 3.12
#   . bench/gpu_setup.sh install         # THERE (sourced): install .whl/ into /tmp/site and
#                                        # put it on PYTHONPATH; nothing to do if imports work
#
# The GPU image (/work/.library/device/KINDS.md) has python3 3.12 with torch (CUDA), numpy,
# pandas, scikit-learn, matplotlib, tqdm, pyyaml, pytest, requests, psutil and more, but not
# pydantic nor dvclive (with dvc, which dvclive imports). Those travel as wheels: the wheels of
# the image's own packages are left out, so the folder stays a few tens of MiB (the device
# carries 64 MiB with the tree). bench/gpu_check.sh sources the install mode itself.

_gpu_setup_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_gpu_setup_whl="$_gpu_setup_root/.whl"

# Packages the GPU image already holds (KINDS.md, read 2026-11-17), in pip's normalised form.
_gpu_image_has="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc
anyio attrs certifi charset-normalizer click cloudpickle colorama contourpy cycler filelock
fonttools frozenlist fsspec h11 h5py httpcore httpx idna jinja2 joblib kiwisolver markupsafe
matplotlib mdurl markdown-it-py multidict mypy-extensions networkx numpy packaging pandas
pathspec pillow pip pluggy propcache protobuf psutil pyarrow pygments pyparsing pytest
python-dateutil pytz pyyaml regex requests rich scikit-learn scipy setuptools shellingham six
sortedcontainers sympy tabulate threadpoolctl tomli torch torchvision tqdm typer
typing-extensions typing-inspect urllib3 wheel wrapt yarl zipp nvidia-ml-py iniconfig"

case "${1:-}" in
wheels)
    set -e
    py=${PYTHON:-python3}
    want=$("$py" - <<'EOF'
import importlib.metadata as m
print(" ".join(f"{n}=={m.version(n)}" for n in ("dvclive", "dvc", "pydantic")))
EOF
)
    rm -rf "$_gpu_setup_whl" && mkdir -p "$_gpu_setup_whl"
    grep -qx '/.whl/' "$_gpu_setup_root/.gitignore" || echo "warning: .whl/ is not git-ignored" >&2
    plats=""
    for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
        manylinux2014_x86_64 manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64 \
        manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
        plats="$plats --platform $p"
    done
    # dvc -> hydra-core -> antlr4-python3-runtime 4.9.*, published as source only: build its
    # pure-Python wheel here, then let the download find it.
    "$py" -m pip download -q --no-deps --no-binary=:all: -d "$_gpu_setup_whl/src" \
        antlr4-python3-runtime==4.9.3
    "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$_gpu_setup_whl" \
        "$_gpu_setup_whl"/src/antlr4*
    rm -rf "$_gpu_setup_whl/src"
    # shellcheck disable=SC2086
    "$py" -m pip download --find-links "$_gpu_setup_whl" -q --only-binary=:all: --python-version 3.12 --implementation cp \
        --abi cp312 --abi abi3 --abi none $plats --platform any -d "$_gpu_setup_whl" $want
    for f in "$_gpu_setup_whl"/*.whl; do
        name=$(basename "$f" | cut -d- -f1 | tr 'A-Z_.' 'a-z--')
        for have in $_gpu_image_has; do
            [ "$name" = "$have" ] && rm -f "$f" && break
        done
    done
    echo "$(ls "$_gpu_setup_whl" | wc -l) wheels, $(du -sh "$_gpu_setup_whl" | cut -f1) in .whl/"
    ;;
install)
    _py=${PYTHON:-python3}
    if "$_py" -c "import pydantic, dvclive" 2>/dev/null; then
        echo "gpu_setup: pydantic and dvclive import already"
    elif [ -d "$_gpu_setup_whl" ]; then
        "$_py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$_gpu_setup_whl"/*.whl &&
            export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" &&
            "$_py" -c "import pydantic, dvclive" &&
            echo "gpu_setup: installed $(ls "$_gpu_setup_whl" | wc -l) wheels into /tmp/site"
    else
        echo "gpu_setup: pydantic or dvclive missing and no .whl/ here: carry .whl" \
            "(bash bench/gpu_setup.sh wheels)" >&2
        return 1 2>/dev/null || exit 1
    fi
    ;;
*)
    echo "usage: bash bench/gpu_setup.sh wheels | . bench/gpu_setup.sh install" >&2
    return 64 2>/dev/null || exit 64
    ;;
esac
