# Device machine only: its scipy needs numpy 2, and RecBole 1.2.1's Config aliases three names
# numpy 2 removed (np.float_, np.complex_, np.unicode_). Put them back before RecBole runs.
import numpy as np

for old, new in (("float_", "float64"), ("complex_", "complex128"), ("unicode_", "str_")):
    if old not in np.__dict__:
        setattr(np, old, getattr(np, new))
