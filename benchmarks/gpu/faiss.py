"""Stand-in for faiss on the device machine: the semantic-ID caches are built on the CPU
machine and carried, so nothing here may be called."""


def __getattr__(name):
    raise ImportError(f"faiss.{name}: faiss was not carried to the device machine")
