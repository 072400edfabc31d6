/*
 * ring.h — a lock-free single-producer single-consumer byte ring (C11 atomics).
 *
 * The audio thread pushes whole records (a header plus audio, given as parts); the I/O
 * thread reads them back in order. A record is either pushed whole or not at all, so the
 * consumer never sees half a record. No allocation after ld_ring_init, no system calls.
 */
#ifndef LIVEDIFF_RING_H
#define LIVEDIFF_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct ld_ring {
    alignas(64) _Atomic uint64_t head;  /* bytes ever written; only the producer stores it */
    alignas(64) _Atomic uint64_t tail;  /* bytes ever read; only the consumer stores it */
    alignas(64) uint8_t *data;
    uint64_t capacity;                  /* a power of two */
} ld_ring;

/* Allocate at least min_bytes of storage. [main-thread] */
static inline bool ld_ring_init(ld_ring *ring, uint64_t min_bytes)
{
    uint64_t capacity = 4096;
    while (capacity < min_bytes)
        capacity <<= 1;
    ring->data = calloc(1, capacity);
    ring->capacity = capacity;
    atomic_store(&ring->head, 0);
    atomic_store(&ring->tail, 0);
    return ring->data != NULL;
}

/* [main-thread] */
static inline void ld_ring_free(ld_ring *ring)
{
    free(ring->data);
    ring->data = NULL;
}

/* Push the parts as one record; false (and nothing written) when they do not fit. [audio-thread] */
static inline bool ld_ring_push(ld_ring *ring, const void *const parts[], const size_t sizes[], unsigned count)
{
    uint64_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    size_t total = 0;
    for (unsigned i = 0; i < count; i++)
        total += sizes[i];
    if (ring->capacity - (head - tail) < total)
        return false;
    for (unsigned i = 0; i < count; i++) {
        const uint8_t *src = parts[i];
        size_t size = sizes[i];
        uint64_t at = head & (ring->capacity - 1);
        size_t first = size < ring->capacity - at ? size : (size_t)(ring->capacity - at);
        memcpy(ring->data + at, src, first);
        memcpy(ring->data, src + first, size - first);
        head += size;
    }
    atomic_store_explicit(&ring->head, head, memory_order_release);
    return true;
}

/* Bytes ready to read. [io-thread] */
static inline uint64_t ld_ring_readable(ld_ring *ring)
{
    return atomic_load_explicit(&ring->head, memory_order_acquire)
         - atomic_load_explicit(&ring->tail, memory_order_relaxed);
}

/* Copy the next `size` bytes out without consuming them (the caller checked ld_ring_readable). [io-thread] */
static inline void ld_ring_peek(ld_ring *ring, void *dst, size_t size)
{
    uint64_t at = atomic_load_explicit(&ring->tail, memory_order_relaxed) & (ring->capacity - 1);
    size_t first = size < ring->capacity - at ? size : (size_t)(ring->capacity - at);
    memcpy(dst, ring->data + at, first);
    memcpy((uint8_t *)dst + first, ring->data, size - first);
}

/* Copy the next `size` bytes out (the caller checked ld_ring_readable). [io-thread] */
static inline void ld_ring_read(ld_ring *ring, void *dst, size_t size)
{
    ld_ring_peek(ring, dst, size);
    uint64_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    atomic_store_explicit(&ring->tail, tail + size, memory_order_release);
}

#endif
