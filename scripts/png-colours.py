#!/usr/bin/env python3
"""Counts the pixels of given colours in a PNG (standard library only).

    scripts/png-colours.py FILE.png NAME=RRGGBB ... [--tolerance N]

Prints one JSON object: {"width", "height", "colours": {NAME: {"pixels": n,
"box": [x0, y0, x1, y1] or null}}}: how many pixels are within N (default 6)
of the colour on every channel, and their bounding box. Used by
Tests/cowtraceTests/ReportTests.swift to check that a headless-Chromium
screenshot of `cowtrace report -o` really drew its charts.

Decodes 8-bit truecolour (RGB/RGBA) and greyscale non-interlaced PNGs, which
is what Chromium writes; anything else is an error (exit status 2).
"""
import json
import struct
import sys
import zlib


def fail(message):
    print(f"png-colours: {message}", file=sys.stderr)
    sys.exit(2)


def decode(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    if header is None:
        fail(f"{path}: no IHDR chunk")
    width, height, depth, colour_type, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type)
    if depth != 8 or channels is None or interlace != 0:
        fail(f"{path}: unsupported PNG (depth {depth}, colour type {colour_type}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows, previous, i = [], bytearray(stride), 0
    for _ in range(height):
        filter_type = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        bpp = channels
        if filter_type == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif filter_type == 2:
            for x in range(stride):
                line[x] = (line[x] + previous[x]) & 0xFF
        elif filter_type == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + previous[x]) >> 1)) & 0xFF
        elif filter_type == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = previous[x]
                c = previous[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        elif filter_type != 0:
            fail(f"{path}: bad filter type {filter_type}")
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def main(argv):
    tolerance = 6
    args = []
    it = iter(argv)
    for a in it:
        if a == "--tolerance":
            tolerance = int(next(it))
        else:
            args.append(a)
    if len(args) < 2:
        fail("usage: png-colours.py FILE.png NAME=RRGGBB ... [--tolerance N]")
    width, height, channels, rows = decode(args[0])
    wanted = []
    for spec in args[1:]:
        name, _, hexcolour = spec.partition("=")
        if len(hexcolour) != 6:
            fail(f"bad colour {spec!r}: expected NAME=RRGGBB")
        wanted.append((name, tuple(int(hexcolour[k:k + 2], 16) for k in (0, 2, 4))))
    found = {name: {"pixels": 0, "box": None} for name, _ in wanted}
    # Count distinct pixel values per row first: pages are mostly flat colour.
    for y, row in enumerate(rows):
        counts = {}
        for x in range(width):
            o = x * channels
            px = (row[o], row[o], row[o]) if channels < 3 else (row[o], row[o + 1], row[o + 2])
            entry = counts.get(px)
            if entry is None:
                counts[px] = [1, x, x]
            else:
                entry[0] += 1
                entry[2] = x
        for px, (n, x0, x1) in counts.items():
            for name, colour in wanted:
                if all(abs(px[k] - colour[k]) <= tolerance for k in range(3)):
                    f = found[name]
                    f["pixels"] += n
                    b = f["box"]
                    f["box"] = [x0, y, x1, y] if b is None else [min(b[0], x0), min(b[1], y), max(b[2], x1), y]
    print(json.dumps({"width": width, "height": height, "colours": found}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
