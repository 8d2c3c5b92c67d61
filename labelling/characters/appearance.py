"""A character's appearance as a glTF 2.0 asset (binary .glb), built from a parametric base
figure: boxes for the body parts, scaled and placed by the sheet's proportions, coloured
from its palette, with the features of the fixed vocabulary as extra parts.

The same parameters always give the same bytes. The test suite checks the assets with the
Khronos glTF validator.
"""

from __future__ import annotations

import json
import struct

from labelling.characters.sheets import Appearance

# A unit cube centred on the origin: 24 vertices (4 per face, so each face has its own
# normal) and 36 indices.
_FACES = [  # normal, and the two axes spanning the face
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
]


def _cube() -> tuple[list[float], list[float], list[int]]:
    positions, normals, indices = [], [], []
    for normal, u, v in _FACES:
        base = len(positions) // 3
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            positions += [0.5 * (normal[i] + su * u[i] + sv * v[i]) for i in range(3)]
            normals += list(normal)
        indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return positions, normals, indices


def _hex_rgba(colour: str) -> list[float]:
    return [round(int(colour[i : i + 2], 16) / 255, 4) for i in (1, 3, 5)] + [1.0]


def _parts(a: Appearance) -> list[tuple[str, str, tuple[float, float, float], tuple[float, float, float]]]:
    """(name, material, centre, size) of each box, in metres; feet on y = 0."""
    leg = 0.8 * a.legs * a.height
    torso = 0.6 * a.height
    width = 0.4 * a.build
    head = 0.24 * a.head
    top = leg + torso
    parts = [
        ("leg_left", "outfit", (-width / 4, leg / 2, 0), (width / 2.6, leg, 0.16)),
        ("leg_right", "outfit", (width / 4, leg / 2, 0), (width / 2.6, leg, 0.16)),
        ("torso", "outfit", (0, leg + torso / 2, 0), (width, torso, 0.22)),
        ("arm_left", "skin", (-width / 2 - 0.05, leg + torso * 0.55, 0), (0.09, torso * 0.9, 0.1)),
        ("arm_right", "skin", (width / 2 + 0.05, leg + torso * 0.55, 0), (0.09, torso * 0.9, 0.1)),
        ("head", "skin", (0, top + 0.02 + head / 2, 0), (head, head, head)),
        ("hair", "hair", (0, top + 0.02 + head * 0.95, -0.01), (head * 1.04, head * 0.2, head * 1.04)),
    ]
    head_y = top + 0.02 + head / 2
    extras = {
        "glasses": ("glasses", "accent", (0, head_y + head * 0.08, head / 2 + 0.01), (head * 0.8, head * 0.12, 0.02)),
        "hat": ("hat", "accent", (0, top + 0.02 + head * 1.15, 0), (head * 1.2, head * 0.3, head * 1.2)),
        "scarf": ("scarf", "accent", (0, top - 0.03, 0), (width * 0.7, 0.07, 0.26)),
        "beard": ("beard", "hair", (0, head_y - head * 0.35, head / 2), (head * 0.7, head * 0.35, 0.05)),
        "cape": ("cape", "accent", (0, leg + torso * 0.45, -0.14), (width * 1.05, torso * 1.1, 0.03)),
        "backpack": ("backpack", "accent", (0, leg + torso * 0.55, -0.18), (width * 0.7, torso * 0.6, 0.14)),
        "headband": ("headband", "accent", (0, head_y + head * 0.3, 0), (head * 1.06, head * 0.1, head * 1.06)),
    }
    return parts + [extras[f] for f in a.features]


def build_glb(appearance: Appearance, *, name: str = "character") -> bytes:
    """The figure as a self-contained .glb: one shared cube mesh per material, a node per part."""
    positions, normals, indices = _cube()
    pos_bytes = struct.pack(f"<{len(positions)}f", *positions)
    nor_bytes = struct.pack(f"<{len(normals)}f", *normals)
    idx_bytes = struct.pack(f"<{len(indices)}H", *indices)
    buffer = pos_bytes + nor_bytes + idx_bytes
    palette = appearance.palette
    materials = ["skin", "hair", "outfit", "accent"]
    gltf = {
        "asset": {"version": "2.0", "generator": "Shaping parametric figure"},
        "scene": 0,
        "scenes": [{"name": name, "nodes": [0]}],
        "buffers": [{"byteLength": len(buffer)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(pos_bytes), "target": 34962},
            {"buffer": 0, "byteOffset": len(pos_bytes), "byteLength": len(nor_bytes), "target": 34962},
            {"buffer": 0, "byteOffset": len(pos_bytes) + len(nor_bytes), "byteLength": len(idx_bytes), "target": 34963},
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 24,
                "type": "VEC3",
                "min": [-0.5, -0.5, -0.5],
                "max": [0.5, 0.5, 0.5],
            },
            {"bufferView": 1, "componentType": 5126, "count": 24, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "count": 36, "type": "SCALAR"},
        ],
        "materials": [
            {
                "name": m,
                "pbrMetallicRoughness": {
                    "baseColorFactor": _hex_rgba(getattr(palette, m)),
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.8,
                },
            }
            for m in materials
        ],
        "meshes": [
            {
                "name": f"box_{m}",
                "primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": i}],
            }
            for i, m in enumerate(materials)
        ],
        "nodes": [{"name": name, "children": []}],
    }
    for part, material, centre, size in _parts(appearance):
        gltf["nodes"][0]["children"].append(len(gltf["nodes"]))
        gltf["nodes"].append(
            {
                "name": part,
                "mesh": materials.index(material),
                "translation": [round(c, 5) for c in centre],
                "scale": [round(s, 5) for s in size],
            }
        )
    json_chunk = json.dumps(gltf, separators=(",", ":"), sort_keys=True).encode()
    json_chunk += b" " * (-len(json_chunk) % 4)
    bin_chunk = buffer + b"\0" * (-len(buffer) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    return b"".join(
        [
            struct.pack("<4sII", b"glTF", 2, total),
            struct.pack("<I4s", len(json_chunk), b"JSON"),
            json_chunk,
            struct.pack("<I4s", len(bin_chunk), b"BIN\0"),
            bin_chunk,
        ]
    )
