/*
 * rt_probe.c — drives build/livediff.clap like a realtime host and counts, on the audio
 * thread only and only inside process(), every allocation, lock and system call.
 *
 *   rt_probe PLUGIN.clap [--blocks N] [--frames F] [--rate R] [--tempo BPM] [--control] [--bench] [--automate]
 *
 * The input is a tone with a click per beat for the first two bars (the preroll, which plays
 * the dry input) and silence after, so a block after them that is not bypassed sounds only if
 * generated audio played ("generated_blocks" of "eligible_blocks"). The preroll crossfade into
 * the first window runs on the way. --automate sends, every block, two mix points (100 % at
 * frame 0, 60 % halfway: the core splits the block there) and switches bypass on for one
 * stretch of 250 in eight (bypass ramps); silence flags are computed every block.
 *
 * Allocations and locks: this executable exports malloc/calloc/realloc/free/aligned_alloc/
 * posix_memalign and the pthread mutex/cond and sem functions (-rdynamic), so the plugin and
 * the libraries it loads call these first; they count when the calling thread is inside the
 * counted region and forward to the C library. System calls: the audio thread installs a
 * seccomp-bpf filter (that thread only) returning SECCOMP_RET_TRAP for every syscall except
 * rt_sigreturn/exit; a SIGSYS handler counts them (vDSO clock_gettime never enters the kernel).
 * --control does a malloc/free, a mutex lock/unlock and a getpid syscall inside the counted
 * region of every block, to show the counters work. --bench times process() the way a DAW
 * runs it instead: no seccomp, the audio thread at SCHED_FIFO (when permitted) sleeping until
 * each block is due rather than spinning. Prints "name value" lines.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "clap_abi.h"
#include "core.h"

/* ---------------------------------------------------------------- counters */

static _Thread_local int counting;              /* set around process() on the audio thread */
static _Atomic unsigned long allocations, locks, syscalls, first_syscall_nr = (unsigned long)-1;

#define COUNT(counter) do { if (counting) atomic_fetch_add(&counter, 1); } while (0)

/* ---------------------------------------------------------------- interposed allocator */

static void *(*real_malloc)(size_t), *(*real_calloc)(size_t, size_t), *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static void *(*real_aligned_alloc)(size_t, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static _Alignas(16) char bootstrap[65536];      /* dlsym may allocate before we know the real calloc */
static size_t bootstrap_used;

static void *bootstrap_alloc(size_t size)
{
    size = (size + 15) & ~(size_t)15;
    if (bootstrap_used + size > sizeof bootstrap)
        return NULL;
    void *p = bootstrap + bootstrap_used;
    bootstrap_used += size;
    return p;
}

static int from_bootstrap(const void *p) { return (const char *)p >= bootstrap && (const char *)p < bootstrap + sizeof bootstrap; }

static void resolve(void)
{
    static int resolving;
    if (real_free || resolving)
        return;
    resolving = 1;
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_free = dlsym(RTLD_NEXT, "free");
    resolving = 0;
}

void *malloc(size_t size) { COUNT(allocations); resolve(); return real_malloc ? real_malloc(size) : bootstrap_alloc(size); }
void *calloc(size_t n, size_t size) { COUNT(allocations); resolve(); return real_calloc ? real_calloc(n, size) : bootstrap_alloc(n * size); }
void *realloc(void *p, size_t size) { COUNT(allocations); resolve(); return real_realloc(p, size); }
void free(void *p) { COUNT(allocations); resolve(); if (p && !from_bootstrap(p)) real_free(p); }
void *aligned_alloc(size_t alignment, size_t size) { COUNT(allocations); resolve(); return real_aligned_alloc(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) { COUNT(allocations); resolve(); return real_posix_memalign(out, alignment, size); }

/* ---------------------------------------------------------------- interposed locks */

#define FORWARD(ret, name, params, args)                                  \
    ret name params {                                                     \
        static ret (*real) params;                                        \
        COUNT(locks);                                                     \
        if (!real) real = (ret (*) params)dlsym(RTLD_NEXT, #name);        \
        return real args;                                                 \
    }
FORWARD(int, pthread_mutex_lock, (pthread_mutex_t *m), (m))
FORWARD(int, pthread_mutex_trylock, (pthread_mutex_t *m), (m))
FORWARD(int, pthread_cond_wait, (pthread_cond_t *c, pthread_mutex_t *m), (c, m))
FORWARD(int, pthread_cond_timedwait, (pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *t), (c, m, t))
FORWARD(int, pthread_cond_signal, (pthread_cond_t *c), (c))
FORWARD(int, pthread_cond_broadcast, (pthread_cond_t *c), (c))
FORWARD(int, sem_wait, (sem_t *s), (s))
FORWARD(int, sem_post, (sem_t *s), (s))

/* ---------------------------------------------------------------- system calls */

static void on_sigsys(int signal_number, siginfo_t *info, void *context)
{
    (void)signal_number;
    if (counting) {
        atomic_fetch_add(&syscalls, 1);
        unsigned long none = (unsigned long)-1;
        atomic_compare_exchange_strong(&first_syscall_nr, &none, (unsigned long)info->si_syscall);
    }
    ((ucontext_t *)context)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;   /* the call is skipped */
}

static int trap_syscalls_on_this_thread(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigreturn, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_exit_group, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program);  /* no TSYNC: this thread only */
}

/* ---------------------------------------------------------------- the host */

typedef struct run {
    const clap_plugin *plugin;
    unsigned blocks, frames;
    double rate, tempo;
    int control, bench, automate;
    double *durations_us;
    unsigned generated_blocks, eligible_blocks;
    int seccomp_failed;
} run;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The block's parameter events (--automate), handed to process() through in_events. */
typedef struct block_events {
    clap_event_param_value events[3];
    uint32_t count;
} block_events;

static uint32_t events_size(const clap_input_events *list) { return ((const block_events *)list->ctx)->count; }
static const clap_event_header *events_get(const clap_input_events *list, uint32_t index)
{
    return &((const block_events *)list->ctx)->events[index].header;
}

static clap_event_param_value param_event(uint32_t time, clap_id id, double value)
{
    return (clap_event_param_value){.header = {.size = sizeof(clap_event_param_value), .time = time,
                                               .type = CLAP_EVENT_PARAM_VALUE}, .param_id = id, .value = value};
}

/* Bypassed in block i? One 250-block stretch in eight. */
static int bypassed(unsigned i) { return (i / 250) % 8 == 7; }

static void *audio_thread(void *arg)
{
    run *r = arg;
    static float in_l[16384], in_r[16384], out_l[16384], out_r[16384];
    float *in[2] = {in_l, in_r}, *out[2] = {out_l, out_r};
    clap_audio_buffer inputs[2] = {{.data32 = in, .channel_count = 2}, {.data32 = NULL, .channel_count = 0}};
    clap_audio_buffer outputs[1] = {{.data32 = out, .channel_count = 2}};
    clap_event_transport transport = {.header = {.size = sizeof transport, .type = CLAP_EVENT_TRANSPORT},
        .flags = CLAP_TRANSPORT_HAS_TEMPO | CLAP_TRANSPORT_HAS_BEATS_TIMELINE | CLAP_TRANSPORT_HAS_SECONDS_TIMELINE
               | CLAP_TRANSPORT_HAS_TIME_SIGNATURE | CLAP_TRANSPORT_IS_PLAYING,
        .tempo = r->tempo, .tsig_num = 4, .tsig_denom = 4};
    block_events automation = {.count = 0};
    clap_input_events in_events = {.ctx = &automation, .size = events_size, .get = events_get};
    clap_process process = {.frames_count = r->frames, .transport = &transport, .audio_inputs = inputs,
                            .audio_outputs = outputs, .audio_inputs_count = 2, .audio_outputs_count = 1,
                            .in_events = &in_events};
    pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;
    long beat = lround(r->rate * 60.0 / r->tempo);
    long preroll_end = 2 * 4 * beat;    /* two bars of 4/4 */
    long ramp = lround(r->rate * LD_SEAM_MS / 1000.0);

    if (r->bench) {
        struct sched_param priority = {.sched_priority = 80};
        pthread_setschedparam(pthread_self(), SCHED_FIFO, &priority);   /* best effort */
    } else if (trap_syscalls_on_this_thread() != 0) {
        r->seccomp_failed = 1;
        return NULL;
    }
    double start = now_s(), period = r->frames / r->rate;
    for (unsigned i = 0; i < r->blocks; i++) {
        long first = (long)i * r->frames;
        for (unsigned f = 0; f < r->frames; f++)            /* a tone with a click per beat: context */
            in_l[f] = in_r[f] = first + f >= preroll_end ? 0.0f
                              : 0.2f * sinf(6.2831853f * 220.0f * (float)((first + f) % (long)r->rate) / (float)r->rate)
                                + ((first + f) % beat == 0 ? 0.7f : 0.0f);
        automation.count = 0;
        if (r->automate) {
            automation.events[automation.count++] = param_event(0, LD_PARAM_MIX, 100);
            automation.events[automation.count++] = param_event(r->frames / 2, LD_PARAM_MIX, 60);
            if (i == 0 || bypassed(i) != bypassed(i - 1))
                automation.events[automation.count++] = param_event(r->frames > 3 ? 3 : 0, LD_PARAM_BYPASS, bypassed(i));
        }
        double seconds = first / r->rate;
        transport.song_pos_seconds = llround(seconds * CLAP_SECTIME_FACTOR);
        transport.song_pos_beats = llround(seconds * r->tempo / 60.0 * CLAP_BEATTIME_FACTOR);
        transport.bar_start = (transport.song_pos_beats / (4 * CLAP_BEATTIME_FACTOR)) * 4 * CLAP_BEATTIME_FACTOR;
        process.steady_time = first;
        double due = start + i * period;
        if (r->bench) {
            struct timespec at = {(time_t)due, (long)((due - (double)(time_t)due) * 1e9)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
        }
        while (now_s() < due)                                /* pace like a sound card (no syscall) */
            ;
        counting = 1;
        double t0 = now_s();
        r->plugin->process(r->plugin, &process);
        if (r->control) {
            void *volatile scratch = malloc(64);   /* volatile: the compiler may not elide the pair */
            free(scratch);
            pthread_mutex_lock(&control_lock);
            pthread_mutex_unlock(&control_lock);
            syscall(SYS_getpid);
        }
        double t1 = now_s();
        counting = 0;
        r->durations_us[i] = (t1 - t0) * 1e6;
        /* After the preroll and away from bypass and its ramps, only generated audio sounds. */
        int settled = !bypassed(i) && (i < 250 || !bypassed(i - (unsigned)(ramp / r->frames) - 2));
        if (first >= preroll_end + ramp && (!r->automate || settled)) {
            r->eligible_blocks++;
            for (unsigned f = 0; f < r->frames; f++)
                if (out_l[f] != 0.0f) {
                    r->generated_blocks++;
                    break;
                }
        }
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint32_t one_event(const clap_input_events *list) { (void)list; return 1; }
static const clap_event_header *the_event(const clap_input_events *list, uint32_t index) { (void)index; return list->ctx; }

static void set_param(const clap_plugin *plugin, clap_id id, double value)
{
    const clap_plugin_params *params = plugin->get_extension(plugin, CLAP_EXT_PARAMS);
    clap_event_param_value event = {.header = {.size = sizeof event, .type = CLAP_EVENT_PARAM_VALUE},
                                    .param_id = id, .value = value};
    const clap_event_header *header = &event.header;
    clap_input_events events = {.ctx = (void *)header, .size = one_event, .get = the_event};
    params->flush(plugin, &events, NULL);
}

int main(int argc, char **argv)
{
    run r = {.blocks = 10000, .frames = 64, .rate = 48000, .tempo = 120};
    const char *path = argc > 1 ? argv[1] : "build/livediff.clap";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--control")) r.control = 1;
        else if (!strcmp(argv[i], "--bench")) r.bench = 1;
        else if (!strcmp(argv[i], "--automate")) r.automate = 1;
        else if (!strcmp(argv[i], "--blocks") && i + 1 < argc) r.blocks = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--frames") && i + 1 < argc) r.frames = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rate") && i + 1 < argc) r.rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--tempo") && i + 1 < argc) r.tempo = atof(argv[++i]);
        else { fprintf(stderr, "unknown argument %s\n", argv[i]); return 2; }
    }
    if (r.frames == 0 || r.frames > 16384 || r.blocks == 0) {
        fprintf(stderr, "--frames must be 1..16384 and --blocks > 0\n");
        return 2;
    }
    struct sigaction action = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    sigaction(SIGSYS, &action, NULL);

    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const clap_plugin_entry *entry = library ? dlsym(library, "clap_entry") : NULL;
    void (*stats)(const clap_plugin *, ld_core_stats *) = library ? (void (*)(const clap_plugin *, ld_core_stats *))dlsym(library, "livediff_clap_stats") : NULL;
    if (!entry || !stats || !entry->init(path)) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return 1;
    }
    const clap_plugin_factory *factory = entry->get_factory(CLAP_FACTORY_ID);
    clap_host host = {.clap_version = CLAP_VERSION_INIT, .name = "rt_probe", .vendor = "", .url = "", .version = "1"};
    const clap_plugin *plugin = factory->create_plugin(factory, &host, "org.livediff.shim");
    if (!plugin || !plugin->init(plugin)) {
        fprintf(stderr, "create_plugin failed\n");
        return 1;
    }
    set_param(plugin, LD_PARAM_GENERATOR, LD_GENERATOR_LOOP);
    set_param(plugin, LD_PARAM_TEMPO_BPM, r.tempo);
    if (!plugin->activate(plugin, r.rate, 1, r.frames) || !plugin->start_processing(plugin)) {
        fprintf(stderr, "activate failed\n");
        return 1;
    }
    ld_core_stats s;
    double deadline = now_s() + 10;
    do {                                                     /* engine connected before we count */
        usleep(10000);
        stats(plugin, &s);
    } while (s.engine_state == LD_ENGINE_CONNECTING && now_s() < deadline);

    r.plugin = plugin;
    r.durations_us = calloc(r.blocks, sizeof(double));
    pthread_t thread;
    pthread_create(&thread, NULL, audio_thread, &r);
    pthread_join(thread, NULL);
    if (r.seccomp_failed) {
        fprintf(stderr, "could not install the seccomp filter\n");
        return 1;
    }
    stats(plugin, &s);
    qsort(r.durations_us, r.blocks, sizeof(double), by_value);
    printf("engine_state %u\nblocks %u\nframes %u\nrate %.0f\n", s.engine_state, r.blocks, r.frames, r.rate);
    printf("allocations %lu\nlocks %lu\nsyscalls %lu\nfirst_syscall_nr %ld\n", atomic_load(&allocations),
           atomic_load(&locks), atomic_load(&syscalls), (long)atomic_load(&first_syscall_nr));
    printf("generated_blocks %u\neligible_blocks %u\nunderruns %llu\ndropped_frames %llu\n", r.generated_blocks, r.eligible_blocks,
           (unsigned long long)s.underruns, (unsigned long long)s.dropped_frames);
    printf("median_us %.3f\np99_us %.3f\np999_us %.3f\nmax_us %.3f\n", r.durations_us[r.blocks / 2],
           r.durations_us[(size_t)(r.blocks * 0.99)], r.durations_us[(size_t)(r.blocks * 0.999)],
           r.durations_us[r.blocks - 1]);
    plugin->stop_processing(plugin);
    plugin->deactivate(plugin);
    plugin->destroy(plugin);
    entry->deinit();
    free(r.durations_us);
    return 0;
}
