"""An .onnx SOURCE: checked (external data must stay in its folder), its inputs declared."""

from __future__ import annotations

from pathlib import Path

from edgepress.compress.load.loaded import Loaded
from edgepress.errors import UserError, first_line
from edgepress.runtime import shapes
from edgepress.runtime.artifact import sha256_file


def load(source, weights, given, trust_pickle) -> Loaded:
    import onnx

    path = Path(source)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise UserError(f"{source!r} is not a valid ONNX model ({first_line(e)})") from None
    _check_external_data(model, path)
    try:  # by path: external data is checked relative to the model's folder, not the cwd
        onnx.checker.check_model(str(path))
    except Exception as e:
        raise UserError(f"{source!r} is not a valid ONNX model ({first_line(e)})") from None
    inits = {i.name for i in model.graph.initializer}
    declared = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue  # old exporters list weights as graph inputs
        t = inp.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                     for d in t.shape.dim)
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        except KeyError:  # 0 (UNDEFINED) or a number onnx does not know passes the checker
            raise UserError(f"ONNX model {source!r}: input {inp.name!r} has element type "
                            f"{t.elem_type}, which is not a tensor type numpy has") from None
        declared[inp.name] = (dims, dtype)
    specs = shapes.resolve(list(declared), given, declared, what=f"ONNX model {source!r}")
    return Loaded("onnx", source, specs, onnx_path=path,
                  provenance={"path": source, "sha256": sha256_file(path)})


def _check_external_data(model, path: Path) -> None:
    """Weights stored outside the .onnx file must lie in its folder: a location like
    ../../etc/passwd or an absolute path (or a link pointing out) would make loading read
    arbitrary files."""
    folder = path.resolve().parent
    for tensor in model.graph.initializer:
        entries = {e.key: e.value for e in tensor.external_data}
        if tensor.data_location != 1 and "location" not in entries:  # 1: TensorProto.EXTERNAL
            continue
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise UserError(f"{str(path)!r}: external data {location!r} of tensor "
                            f"{tensor.name!r} is outside the model's folder (refused)")
        if not target.is_file():
            raise UserError(f"{str(path)!r}: external data file {location!r} of tensor "
                            f"{tensor.name!r} is missing")
