"""Text data: sources (files, folders, built-in corpora), the embedded demo corpus, tokenizers, padding.

Layering, bottom up: ``files`` (read files and folders) -> ``builtin`` / ``embedded`` (the corpora, read with
``files``) -> ``sources`` (resolve a source name to examples) -> ``inspect``; ``tokenizer`` and ``batching`` stand
apart. Nothing imports upward, so there is no import cycle.
"""
