"""Decode Plotly figure JSON (arrays may be base64 "typed arrays" since Plotly 6)."""

import base64

import numpy as np

_DTYPES = {
    "f8": np.float64,
    "f4": np.float32,
    "i4": np.int32,
    "i2": np.int16,
    "i1": np.int8,
    "u1": np.uint8,
    "u2": np.uint16,
    "u4": np.uint32,
}


def array(value):
    """A trace attribute as a numpy array, whether a list or a typed-array dict."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(
            base64.b64decode(value["bdata"]), dtype=_DTYPES[value["dtype"]]
        )
        shape = value.get("shape")
        if shape:
            data = data.reshape([int(s) for s in str(shape).split(",")])
        return data
    return np.asarray(value)
