"""What every package of the toolkit shares: one error type, atomic writes, config files, registries and
the command-line conventions (one-line errors, exit status 2, progress bars only on a terminal).

The packages are layered one way: ``infra`` <- ``data_prep`` <- ``pubmedclip`` <- ``medvqa``; a package
imports only from those to its left.
"""
