"""Stage `search`: run the architecture search, write genotype.json and metrics/search.json."""

from dnas.config import load_params
from dnas.data import PREPARED_ROOT, load_prepared
from dnas.errors import run_main
from dnas.io import write_json
from dnas.runtime import pick_device
from dnas.search.loop import run_search
from dnas.spaces.genotype import save_genotype


def main() -> None:
    p = load_params()
    device = pick_device(p.common.device)
    data = load_prepared(PREPARED_ROOT / p.search.dataset)
    result = run_search(p, data, device, "dvclive/search", "checkpoints/search")
    save_genotype("genotype.json", result.genotype)
    write_json("metrics/search.json", result.metrics)
    print(f"genotype: {result.genotype.arch or 'genotype.json'}")


if __name__ == "__main__":
    run_main(main)
