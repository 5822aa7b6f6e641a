#!/usr/bin/env python3
"""Checks that a LoRAShear Studio screenshot shows a drawn dependency graph, from its pixels.

  check-screenshot.py SHOT.png

Passes when (1) attention nodes are drawn: at least 1 % of the pixels have the attention node
fill (#9ecae1, core/src/graph/export.cpp), and (2) their labels are drawn: dark pixels inside those
node boxes (a system without fonts draws no text) make up at least 2 % of the fill count. Reads the PNG with zlib alone (8-bit RGB/RGBA, not
interlaced: what Qt writes), so it needs nothing beyond Python's standard library.
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: unsupported PNG (depth {depth}, colour type {colour})")
    bpp = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def is_fill(row, x, bpp, fill):
    r, g, b = row[x * bpp:x * bpp + 3]
    return abs(r - fill[0]) <= 6 and abs(g - fill[1]) <= 6 and abs(b - fill[2]) <= 6


def main():
    width, height, bpp, rows = read_png(sys.argv[1])
    fill = (0x9E, 0xCA, 0xE1)
    hits = sum(is_fill(row, x, bpp, fill) for row in rows for x in range(width))
    total = width * height
    print(f"{width}x{height}: attention fill {hits} px ({100.0 * hits / total:.2f} %)")
    if hits < 0.01 * total:
        print("FAIL: no graph drawn (attention nodes cover under 1 % of the window)")
        return 1
    # Label text: dark pixels with node fill both to their left and to their right on the same
    # row (within 40 px), i.e. inside a node box (the tree's colour swatches have text beside them,
    # not around it).
    dark = 0
    for y, row in enumerate(rows):
        fill_x = [x for x in range(width) if is_fill(row, x, bpp, fill)]
        if not fill_x:
            continue
        j = 0
        for x in range(fill_x[0], fill_x[-1] + 1):
            while j + 1 < len(fill_x) and fill_x[j + 1] < x:
                j += 1
            if fill_x[j] >= x or j + 1 >= len(fill_x):
                continue
            left, right = fill_x[j], fill_x[j + 1]
            if x - left > 40 or right - x > 40:
                continue
            r, g, b = row[x * bpp:x * bpp + 3]
            if 0.299 * r + 0.587 * g + 0.114 * b < 110:
                dark += 1
    print(f"label pixels inside the attention nodes: {dark} ({100.0 * dark / hits:.1f} % of the fill)")
    if dark < 0.02 * hits:
        print("FAIL: the nodes have no labels (no fonts?)")
        return 1
    print("ok: the graph is drawn with its labels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
