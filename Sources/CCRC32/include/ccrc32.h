/* ccrc32.h: the recording format's checksum (zlib's CRC-32, polynomial
 * 0x04C11DB7 reflected), by carry-less multiplication where the CPU has it.
 *
 * zlib's own crc32 reads a few bytes per cycle; every block a recorder
 * writes and every block check and replay read is checksummed, so on the
 * CoW storm it was a third of check's first pass and about 20 ms of the
 * recorder's CPU. With PCLMULQDQ (x86-64: every CPU since 2010) the same
 * value comes about ten times faster; elsewhere zlib computes it. */
#ifndef CCRC32_H
#define CCRC32_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32 of `len` bytes at `buf`, continuing from `crc` (0 to start),
 * exactly as zlib's crc32_z(crc, buf, len) returns it. */
uint32_t ccrc32(uint32_t crc, const void *buf, size_t len);

/* The same with zlib's code only (for tests and benchmarks). */
uint32_t ccrc32_zlib(uint32_t crc, const void *buf, size_t len);

/* 1 when ccrc32 folds with PCLMULQDQ on this CPU, 0 when zlib does all of it. */
int ccrc32_uses_clmul(void);

#endif
