"""Tabular NAS benchmarks: looking up a searched cell's recorded accuracies."""

# The project's dataset names -> the NAS-Bench-201 dataset whose test accuracy (x-test; the
# whole test set for CIFAR-10) the papers report for a cell (docs/nb201-benchmark.md).
NB201_TEST_DATASET = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "imagenet16-120": "ImageNet16-120",
}
