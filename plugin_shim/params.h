/*
 * params.h — the plugin's parameters: one table shared by the VST3 and CLAP front-ends.
 *
 * Ids, ranges and defaults come from livediff_shm.h (ld_param, ld_param_range). Values are
 * "plain" (what the user sees: 120 BPM, seed 7); VST3 hosts talk in normalized [0, 1].
 * Every function here is pure and may be called from [any-thread].
 */
#ifndef LIVEDIFF_PARAMS_H
#define LIVEDIFF_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "include/livediff_shm.h"

typedef struct ld_param_info {
    uint32_t id;                    /* ld_param */
    const char *name;               /* the attribute name pedalboard users type; units stay empty */
    double min, max, def;
    bool stepped;                   /* integer-valued */
    const char *const *labels;      /* names of each step for enum parameters, else NULL */
    bool bypass;                    /* the host's bypass switch (VST3 kIsBypass, CLAP_PARAM_IS_BYPASS) */
} ld_param_info;

/* The parameters in id order. Ids may have gaps (reserved ids, see ld_param), so hosts index
 * this table and values[] arrays are indexed by id (LD_PARAM_COUNT entries). */
enum { LD_PARAM_DEFINED = 15 };
extern const ld_param_info ld_param_table[LD_PARAM_DEFINED];

/* The table entry of `id`, NULL when id is not a parameter. [any-thread] */
const ld_param_info *ld_param_find(uint32_t id);

/* Clamp into range, round stepped values to integers and tempo to 1/1000 BPM (hosts pass
 * normalized values through 32-bit floats; rounding gives back exactly what was typed). [any-thread] */
double ld_param_sanitize(const ld_param_info *p, double plain);

double ld_param_to_normalized(const ld_param_info *p, double plain);   /* [any-thread] */
double ld_param_from_normalized(const ld_param_info *p, double norm);  /* [any-thread] */

/* Text shown by hosts: integers, whole BPM for tempo, names for enums. [any-thread] */
void ld_param_format(const ld_param_info *p, double plain, char *out, size_t out_size);

/* Parse a number ("100", "100.0") or an enum name ("hold"); false if the text is neither. [any-thread] */
bool ld_param_parse(const ld_param_info *p, const char *text, double *plain);

/* Saved state: "LDP1", a uint32 count, then (uint32 id, float64 value) pairs, little-endian. */
enum { LD_PARAM_STATE_BYTES = 8 + LD_PARAM_DEFINED * 12 };

/* Write values[] (indexed by id) into out; returns the bytes written. [main-thread] */
size_t ld_params_save(const double values[LD_PARAM_COUNT], uint8_t out[LD_PARAM_STATE_BYTES]);

/* Read a saved state into values[]: unknown ids are skipped, values sanitized, parameters the
 * state lacks (saved by an older plugin) keep their values. False if the
 * bytes are not a livediff parameter state (values[] is then untouched). [main-thread] */
bool ld_params_load(const uint8_t *in, size_t size, double values[LD_PARAM_COUNT]);

#endif
