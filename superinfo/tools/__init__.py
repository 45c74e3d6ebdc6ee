"""Consumers of run folders: ablation sweeps (``sweep``), the embedded demo (``demo``), reading and plotting runs
(``analysis``), backbone export (``export``) and the transfer linear-evaluation suite (``transfer``)."""
