"""ShareableList over libshmkit's list API (bound once that API lands)."""


class ShareableList:
    def __init__(self, sequence=None, *, name=None):
        raise NotImplementedError("shmkit.ShareableList: the C list API is not bound yet")
