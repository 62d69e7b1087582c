"""Search spaces: op sets, cells, genotypes and the rules that derive a genotype from alphas."""
