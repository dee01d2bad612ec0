#!/usr/bin/env python3
"""Make QEMU's IORT claim CANWBS for its PCI root complex.

usage: iort-canwbs.py CONSOLE_LOG OUT.aml

CONSOLE_LOG is a guest console log with "IORT-HEX <hex>" lines (guest/init with
vmsi.dump_iort=1).  Why: Linux 7.2 allows an SMMUv3 vIOMMU (and so nested
translation) only if the SMMU has S2FWB or the root complex is CANWBS; QEMU 11
models neither, and the device tree cannot express CANWBS at all.  Setting the
flag in the IORT (loaded through the kernel's ACPI table upgrade) is the
smallest change that lets the unmodified driver take the nested paths.
"""
import struct
import sys

log, out = sys.argv[1:3]
hexdump = "".join(l.split("IORT-HEX ", 1)[1].strip()
                  for l in open(log, errors="replace") if "IORT-HEX " in l)
t = bytearray.fromhex(hexdump)
if not (t[:4] == b"IORT" and len(t) == struct.unpack_from("<I", t, 4)[0] and sum(t) & 0xFF == 0):
    sys.exit(f"iort-canwbs: no valid IORT dump in {log}")

count, off = struct.unpack_from("<II", t, 36)    # node count, offset of the first node
patched = 0
for _ in range(count):
    kind, length = t[off], struct.unpack_from("<H", t, off + 1)[0]
    if kind == 2:               # PCI root complex node
        # 16-byte node header, then memory access properties:
        # u32 cache_coherency, u8 hints, u16 reserved, u8 memory_flags (offset 23)
        t[off + 23] |= 1 << 2   # ACPI_IORT_MF_CANWBS
        patched += 1
    off += length
if not patched:
    sys.exit("iort-canwbs: IORT has no root complex node")

# The table upgrade only replaces a table whose OEM revision grows.
struct.pack_into("<I", t, 24, struct.unpack_from("<I", t, 24)[0] + 1)
t[9] = 0
t[9] = -sum(t) & 0xFF           # checksum: all bytes sum to 0
open(out, "wb").write(t)
print(f"iort-canwbs: {len(t)}-byte IORT, CANWBS set in {patched} root complex node(s)")
