/* params.c — see params.h. */
#include "params.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "param_labels.h"        /* style_labels[] and sound_labels[], generated from presets/ at build time */

static const char *const underrun_labels[] = {"silence", "hold", "dry"};
static const char *const sync_labels[] = {"auto", "host", "free"};
static const char *const generator_labels[] = {"diffusion", "loop", "custom", "sao_small"};
static const char *const bypass_labels[] = {"off", "on"};
static const char *const preroll_labels[] = {"dry", "silence"};
static const char *const context_source_labels[] = {"auto", "main", "sidechain", "both"};

_Static_assert(sizeof style_labels / sizeof *style_labels == LD_STYLE_COUNT && LD_STYLE_MAX == LD_STYLE_COUNT - 1,
               "presets/styles/ must name exactly LD_STYLE_COUNT styles, ids 0..LD_STYLE_MAX");
_Static_assert(sizeof sound_labels / sizeof *sound_labels == LD_SOUND_COUNT && LD_SOUND_MAX == LD_SOUND_COUNT - 1,
               "presets/ must hold exactly LD_SOUND_COUNT - 1 presets (sound 0 is the engine's)");

const ld_param_info ld_param_table[LD_PARAM_DEFINED] = {
    {LD_PARAM_TEMPO_BPM, "tempo_bpm", LD_TEMPO_MIN, LD_TEMPO_MAX, LD_TEMPO_DEFAULT, false, NULL, false},
    {LD_PARAM_SEED, "seed", LD_SEED_MIN, LD_SEED_MAX, LD_SEED_DEFAULT, true, NULL, false},
    {LD_PARAM_STYLE, "style", LD_STYLE_MIN, LD_STYLE_MAX, LD_STYLE_DEFAULT, true, style_labels, false},
    {LD_PARAM_WINDOW_BARS, "window_bars", LD_WINDOW_BARS_MIN, LD_WINDOW_BARS_MAX, LD_WINDOW_BARS_DEFAULT, true, NULL, false},
    {LD_PARAM_LOOKAHEAD, "lookahead", LD_LOOKAHEAD_MIN, LD_LOOKAHEAD_MAX, LD_LOOKAHEAD_DEFAULT, true, NULL, false},
    {LD_PARAM_CONTEXT_BARS, "context_bars", LD_CONTEXT_BARS_MIN, LD_CONTEXT_BARS_MAX, LD_CONTEXT_BARS_DEFAULT, true, NULL, false},
    {LD_PARAM_UNDERRUN_POLICY, "underrun_policy", LD_UNDERRUN_SILENCE, LD_UNDERRUN_DRY, LD_UNDERRUN_SILENCE, true, underrun_labels, false},
    {LD_PARAM_SYNC_MODE, "sync_mode", LD_SYNC_AUTO, LD_SYNC_FREE, LD_SYNC_AUTO, true, sync_labels, false},
    {LD_PARAM_GENERATOR, "generator", LD_GENERATOR_DIFFUSION, LD_GENERATOR_SAO_SMALL, LD_GENERATOR_DIFFUSION, true, generator_labels, false},
    {LD_PARAM_MIX, "mix", LD_MIX_MIN, LD_MIX_MAX, LD_MIX_DEFAULT, true, NULL, false},
    {LD_PARAM_BYPASS, "bypass", LD_BYPASS_OFF, LD_BYPASS_ON, LD_BYPASS_OFF, true, bypass_labels, true},
    {LD_PARAM_CONTEXT_SOURCE, "context_source", LD_CONTEXT_SOURCE_AUTO, LD_CONTEXT_SOURCE_BOTH, LD_CONTEXT_SOURCE_AUTO,
     true, context_source_labels, false},
    {LD_PARAM_PREROLL, "preroll", LD_PREROLL_DRY, LD_PREROLL_SILENCE, LD_PREROLL_DRY, true, preroll_labels, false},
    {LD_PARAM_VARIATION, "variation", LD_VARIATION_MIN, LD_VARIATION_MAX, LD_VARIATION_DEFAULT, true, NULL, false},
    {LD_PARAM_SOUND, "sound", LD_SOUND_MIN, LD_SOUND_MAX, LD_SOUND_DEFAULT, true, sound_labels, false},
};

const ld_param_info *ld_param_find(uint32_t id)
{
    for (uint32_t i = 0; i < LD_PARAM_DEFINED; i++)     /* a dozen compares: fine on the audio thread */
        if (ld_param_table[i].id == id)
            return &ld_param_table[i];
    return NULL;
}

double ld_param_sanitize(const ld_param_info *p, double plain)
{
    if (isnan(plain))
        return p->def;
    plain = fmin(fmax(plain, p->min), p->max);
    return p->stepped ? round(plain) : round(plain * 1000.0) / 1000.0;
}

double ld_param_to_normalized(const ld_param_info *p, double plain)
{
    return (ld_param_sanitize(p, plain) - p->min) / (p->max - p->min);
}

double ld_param_from_normalized(const ld_param_info *p, double norm)
{
    return ld_param_sanitize(p, p->min + norm * (p->max - p->min));
}

void ld_param_format(const ld_param_info *p, double plain, char *out, size_t out_size)
{
    plain = ld_param_sanitize(p, plain);
    if (p->labels)
        snprintf(out, out_size, "%s", p->labels[(int)(plain - p->min)]);
    else
        /* Whole numbers, tempo included: pedalboard infers a parameter's settable values from
         * the distinct texts it sees, so finer tempo text would make `tempo_bpm = 100` land on
         * a neighbouring grid value instead. The value itself keeps 1/1000 BPM. */
        snprintf(out, out_size, "%.0f", plain);
}

bool ld_param_parse(const ld_param_info *p, const char *text, double *plain)
{
    while (*text == ' ')
        text++;
    if (p->labels) {
        for (int i = 0; i <= (int)(p->max - p->min); i++) {
            if (strcmp(text, p->labels[i]) == 0) {
                *plain = p->min + i;
                return true;
            }
        }
    }
    char *end;
    double value = strtod(text, &end);
    if (end == text || !isfinite(value))
        return false;
    while (*end == ' ')
        end++;
    if (*end != '\0')
        return false;
    *plain = ld_param_sanitize(p, value);
    return true;
}

/* [main-thread] (saved state) */
static void put_u32(uint8_t *out, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

/* [main-thread] (saved state) */
static uint32_t get_u32(const uint8_t *in)
{
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
}

size_t ld_params_save(const double values[LD_PARAM_COUNT], uint8_t out[LD_PARAM_STATE_BYTES])
{
    memcpy(out, "LDP1", 4);
    put_u32(out + 4, LD_PARAM_DEFINED);
    for (uint32_t i = 0; i < LD_PARAM_DEFINED; i++) {
        uint32_t id = ld_param_table[i].id;
        uint8_t *entry = out + 8 + i * 12;
        uint64_t bits;
        memcpy(&bits, &values[id], 8);
        put_u32(entry, id);
        put_u32(entry + 4, (uint32_t)bits);
        put_u32(entry + 8, (uint32_t)(bits >> 32));
    }
    return LD_PARAM_STATE_BYTES;
}

bool ld_params_load(const uint8_t *in, size_t size, double values[LD_PARAM_COUNT])
{
    if (size < 8 || memcmp(in, "LDP1", 4) != 0)
        return false;
    uint32_t count = get_u32(in + 4);
    if (count > (size - 8) / 12)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *entry = in + 8 + i * 12;
        const ld_param_info *p = ld_param_find(get_u32(entry));
        if (!p)
            continue;
        uint64_t bits = get_u32(entry + 4) | (uint64_t)get_u32(entry + 8) << 32;
        double value;
        memcpy(&value, &bits, 8);
        values[p->id] = ld_param_sanitize(p, value);
    }
    return true;
}
