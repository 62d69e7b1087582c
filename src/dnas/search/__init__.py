"""Architecture search: samplers, supernets, and the bilevel search loop."""
