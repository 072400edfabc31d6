/* clock.c — see clock.h. */
#include "clock.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "include/livediff_shm.h"

enum source { SOURCE_NONE, SOURCE_OWN, SOURCE_HOST, SOURCE_STOPPED };

void ld_clock_reset(ld_clock *clock)
{
    uint32_t epoch = clock->epoch, grid = clock->last.grid;
    *clock = (ld_clock){.epoch = epoch + 1, .source = SOURCE_NONE, .tsig_num = 4, .tsig_den = 4,
                        .last = {.grid = grid + 1}, .sync_mode = -1};
}

/* Whether the engine must re-place (and acknowledge) windows for this block. [audio-thread] */
static bool grid_changed(const ld_position *a, const ld_position *b)
{
    return a->epoch != b->epoch || a->tempo != b->tempo || a->tsig_num != b->tsig_num || a->tsig_den != b->tsig_den
        || (a->flags & LD_TRANSPORT_LOOP_ACTIVE) != (b->flags & LD_TRANSPORT_LOOP_ACTIVE)
        || a->loop_start_beats != b->loop_start_beats || a->loop_end_beats != b->loop_end_beats;
}

/* [audio-thread] */
static bool sane_tempo(double tempo) { return isfinite(tempo) && tempo >= 1.0 && tempo <= 1000.0; }

/* [audio-thread] */
static bool sane_tsig(int32_t num, int32_t den)
{
    return num >= 1 && num <= 64 && den >= 1 && den <= 64 && (den & (den - 1)) == 0;
}

/* Within the wire range of positions (livediff_shm.h), which the engine refuses beyond. [audio-thread] */
static bool sane_beats(double beats) { return isfinite(beats) && fabs(beats) <= (double)(1 << LD_POS_BEATS_BITS); }

/* The host's bar line if it is plausible, else the one derived from the beat position. [audio-thread] */
static double bar_start(const ld_host_transport *host, double beats, double bar_beats)
{
    if (host && (host->flags & LD_HOST_HAS_BAR) && isfinite(host->bar_start_beats)
        && host->bar_start_beats <= beats + 1e-9 && beats < host->bar_start_beats + bar_beats - 1e-9)
        return host->bar_start_beats;
    return floor(beats / bar_beats + 1e-9) * bar_beats;
}

uint32_t ld_clock_advance(ld_clock *clock, const ld_host_transport *host, double tempo_param,
                          int sync_mode, uint32_t frames, double sample_rate, ld_position *out)
{
    uint32_t problems = 0;
    uint32_t hf = host ? host->flags : 0;
    bool host_tempo_ok = (hf & LD_HOST_HAS_TEMPO) && sane_tempo(host->tempo);
    bool host_tsig_ok = (hf & LD_HOST_HAS_TSIG) && sane_tsig(host->tsig_num, host->tsig_den);
    bool host_beats_ok = (hf & LD_HOST_HAS_BEATS) && sane_beats(host->pos_beats);
    bool host_samples_ok = (hf & LD_HOST_HAS_SAMPLES) && host->pos_samples >= -((int64_t)1 << LD_POS_SAMPLES_BITS)
                        && host->pos_samples <= (int64_t)1 << LD_POS_SAMPLES_BITS;
    if ((hf & LD_HOST_HAS_TEMPO) && !host_tempo_ok)
        problems |= LD_HOST_BAD_TEMPO;
    if ((hf & LD_HOST_HAS_TSIG) && !host_tsig_ok)
        problems |= LD_HOST_BAD_TSIG;
    if (((hf & LD_HOST_HAS_BEATS) && !host_beats_ok) || ((hf & LD_HOST_HAS_SAMPLES) && !host_samples_ok))
        problems |= LD_HOST_BAD_POSITION;
    if (host_tempo_ok)
        clock->host_tempo = host->tempo;

    bool host_playing = (hf & LD_HOST_PLAYING) && (host_beats_ok || host_samples_ok);
    enum source source;
    if (sync_mode == LD_SYNC_FREE)
        source = SOURCE_OWN;
    else if (host_playing)
        source = SOURCE_HOST;
    else if (clock->host_has_played || sync_mode == LD_SYNC_HOST)
        source = SOURCE_STOPPED;
    else
        source = SOURCE_OWN;
    if (source == SOURCE_HOST)
        clock->host_has_played = true;

    bool jumped = clock->source == SOURCE_NONE;
    bool switched = clock->sync_mode >= 0 && sync_mode != clock->sync_mode;   /* by the parameter */
    clock->sync_mode = sync_mode;
    if (host_tsig_ok && ((uint32_t)host->tsig_num != clock->tsig_num || (uint32_t)host->tsig_den != clock->tsig_den)) {
        jumped = true;
        clock->tsig_num = (uint32_t)host->tsig_num;
        clock->tsig_den = (uint32_t)host->tsig_den;
    }

    double tempo = source == SOURCE_OWN ? tempo_param : clock->host_tempo > 0 ? clock->host_tempo : tempo_param;
    double beats_per_sample = tempo / 60.0 / sample_rate;
    int64_t samples;
    double beats;
    if (source == SOURCE_OWN) {
        if (clock->source != SOURCE_OWN && clock->source != SOURCE_NONE && !switched)
            jumped = true;   /* the host left (e.g. never played after a reset): our own clock starts over */
        samples = jumped ? 0 : clock->next_samples;
        beats = jumped ? 0.0 : clock->next_beats;
    } else {
        /* Host position (also while stopped, when it stands still). A position that
         * continues the previous block keeps our integrated samples, so rounding of a
         * host's seconds never looks like a jump. */
        beats = host_beats_ok ? host->pos_beats
              : host_samples_ok ? (double)host->pos_samples * beats_per_sample : clock->next_beats;
        samples = host_samples_ok ? host->pos_samples
                : host_beats_ok ? llround(beats / beats_per_sample) : clock->next_samples;
        if (!sane_beats(beats) || samples < -((int64_t)1 << LD_POS_SAMPLES_BITS)
            || samples > (int64_t)1 << LD_POS_SAMPLES_BITS) {
            /* one unit in range, the other converted out of it (found by fuzz_clock) */
            problems |= LD_HOST_BAD_POSITION;
            beats = clock->next_beats;
            samples = clock->next_samples;
        }
        bool continues = host_samples_ok ? llabs(samples - clock->next_samples) <= 1
                       : fabs(beats - clock->next_beats) <= 2.0 * beats_per_sample + 1e-9;
        if (!continues || clock->source == SOURCE_OWN)
            jumped = true;
        if (continues && !jumped)
            samples = clock->next_samples;
    }
    if (jumped)
        clock->epoch++;

    double bar_beats = clock->tsig_num * 4.0 / clock->tsig_den;
    bool advancing = source != SOURCE_STOPPED;
    bool loop = source == SOURCE_HOST && (hf & LD_HOST_LOOP_ACTIVE) && sane_beats(host->loop_start_beats)
             && sane_beats(host->loop_end_beats) && host->loop_end_beats > host->loop_start_beats;
    *out = (ld_position){
        .epoch = clock->epoch,
        .flags = (advancing ? LD_TRANSPORT_PLAYING : 0u) | (loop ? LD_TRANSPORT_LOOP_ACTIVE : 0u)
               | (jumped && switched ? LD_TRANSPORT_SYNC_SWITCH : 0u)
               | (source != SOURCE_OWN ? LD_TRANSPORT_HOST_CLOCK : 0u)
               | (host_tempo_ok ? LD_TRANSPORT_TEMPO_VALID : 0u) | (host_tsig_ok ? LD_TRANSPORT_TSIG_VALID : 0u),
        .tempo = tempo,
        .pos_samples = samples,
        .pos_beats = beats,
        .bar_start_beats = bar_start(source == SOURCE_HOST ? host : NULL, beats, bar_beats),
        .tsig_num = clock->tsig_num,
        .tsig_den = clock->tsig_den,
        .loop_start_beats = loop ? host->loop_start_beats : 0.0,
        .loop_end_beats = loop ? host->loop_end_beats : 0.0,
    };
    out->grid = clock->last.grid + (grid_changed(out, &clock->last) ? 1u : 0u);
    clock->last = *out;
    clock->source = source;
    clock->next_samples = samples + (advancing ? frames : 0);
    clock->next_beats = beats + (advancing ? frames * beats_per_sample : 0.0);
    return problems;
}
