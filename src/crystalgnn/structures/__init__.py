"""Single structures: the parser and validity check (:mod:`.parse`) and the lazy, content-keyed
:class:`~crystalgnn.structures.source.StructureSource` (:mod:`.source`)."""
