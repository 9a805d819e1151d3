"""Figure-caption pairs from PubMed Central Open Access articles, as WebDataset shards.

``jats`` parses the articles, ``sources`` finds them (packages, folders, ``.nxml``, the PMC file list),
``download`` fetches packages, ``article`` turns one article into candidate pairs, ``shards`` writes tar
shards, ``pipeline`` runs it all in parallel and resumably, and ``cli`` is ``pubmedclip pmc-oa extract``.
"""
