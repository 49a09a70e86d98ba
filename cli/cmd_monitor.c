/*
 * `memfit monitor`: samples memory at an interval, judges alert levels with
 * hysteresis, runs actions on entering a level, and writes the JSON-lines
 * log. It can watch the machine, a running process (--pid) or a command it
 * starts (after `--`), whose exit status it passes through and whose OOM
 * kill it reports.
 *
 * The loop waits with sigtimedwait() so a child's exit or a Ctrl-C is seen
 * at once rather than at the next tick.
 *
 * With a command it also keeps the pressure channel (docs/channel.md): the
 * state file rewritten after every sample, whose path the command finds in
 * MEMFIT_PRESSURE_FILE, removed when the monitor ends.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "monitor_gpu.h"

const char cmd_monitor_help[] =
    "Usage: memfit monitor [OPTIONS] [--pid PID | -- COMMAND [ARGS...]]\n"
    "\n"
    "Watch memory over time: the machine, the container (cgroup) and a process\n"
    "tree. Levels ok / warning / critical / danger are judged on the memory in use\n"
    "(cgroup usage minus the inactive file pages nobody maps: mapped weights count;\n"
    "see memfit report --help) against the effective limit: the cgroup limit;\n"
    "without one, the watched process tree's RSS against that RSS plus the\n"
    "machine's available memory (what it could grow to), or with no process\n"
    "watched the machine's used memory against physical memory.\n"
    "\n"
    "Options:\n"
    "  -i, --interval D        time between samples (default 1s; e.g. 0.1, 100ms)\n"
    "  -d, --duration D        stop after D (with a command: SIGTERM it then)\n"
    "  -p, --pid PID           watch this process and its descendants\n"
    "  -l, --log FILE.jsonl    append one JSON object per sample and event\n"
    "                          (docs/monitor-log.md); '-' for standard output\n"
    "      --warn PCT          warning threshold, percent of the limit (default 80)\n"
    "      --critical PCT      critical threshold (default 90)\n"
    "      --danger-available SIZE\n"
    "                          danger when less than SIZE is left (default: the\n"
    "                          smaller of 50MB and half the room above critical)\n"
    "      --hysteresis PCT    margin to leave a level (default 2; GPU levels too)\n"
    "      --on-warning CMD    run CMD (with /bin/sh) on entering warning\n"
    "      --on-critical CMD   ... on entering critical\n"
    "      --on-danger CMD     ... on entering danger\n"
    "                          {pid} {level} {percent} are substituted\n"
    "      --signal LEVEL=SIG  send SIG (USR1, SIGUSR1 or a number) to the command\n"
    "                          or --pid on entering LEVEL (warning, critical or\n"
    "                          danger); repeatable\n"
    "      --repeat D          run hooks and send signals again every D while the\n"
    "                          level (or a higher one) persists (default: only on\n"
    "                          entering it)\n"
    "      --no-channel        no state file (by default the command gets one)\n"
    "      --channel           a state file without a command too (path printed)\n"
    "      --channel-dir DIR   write the state file as DIR/state.json (DIR is made\n"
    "                          if missing); implies --channel\n"
    "      --plot FILE         redraw FILE (.svg, or .png) from the --log file every\n"
    "                          --plot-every while running, and once at the end\n"
    "      --plot-every D      (default 60s; at least 100ms; memfit plot --help)\n"
    "      --status-every D    when stderr is not a terminal, print the live line's\n"
    "                          figures every D (default 60s; 0 = never)\n"
    "      --no-gpu            do not read GPUs\n"
    "      --gpu-warn PCT      each GPU's warning level, percent of its memory\n"
    "                          (default 80); also --gpu-critical PCT (90) and\n"
    "                          --gpu-danger PCT (95). Changes are printed and\n"
    "                          logged (gpu_level); they run no --on-* action\n"
    "  -q, --quiet             no live line, status lines or level messages\n"
    "\n"
    "On a terminal a live line shows the latest sample; level changes are printed\n"
    "on stderr. With a command, memfit exits with the command's status (128+N\n"
    "when killed by signal N) and says so when the kernel OOM-killed it.\n"
    "\n"
    "The command (and hooks) get MEMFIT_PRESSURE_FILE, a JSON state file rewritten\n"
    "after every sample (level, memory in use, headroom, a suggested batch-size\n"
    "factor; docs/channel.md), and MEMFIT_MONITOR_PID. Its private directory is\n"
    "removed when the monitor exits.\n"
    "\n"
    "Examples:\n"
    "  memfit monitor -i 100ms -l run.jsonl -- python3 train.py\n"
    "  memfit monitor --pid 1234 --warn 70 --on-warning 'kill -USR1 {pid}'\n"
    "  memfit monitor --signal warning=USR1 --repeat 30s -- python3 train.py\n";

/* --signal LEVEL=SIG */
struct level_signal {
    enum memfit_level level;
    int sig;
};

#define MAX_SIGNALS 8

struct monitor_opts {
    uint64_t interval_ns;
    uint64_t duration_ns; /* 0 = unlimited */
    pid_t pid;
    const char *log_path;
    struct memfit_alert_thresholds thresholds;
    const char *on_level[4]; /* indexed by enum memfit_level */
    bool gpu;
    bool quiet;
    char **command;
    struct level_signal signals[MAX_SIGNALS];
    unsigned n_signals;
    uint64_t repeat_ns;       /* 0: hooks and signals only on entering a level */
    int channel;              /* -1: default (with a command or --channel-dir); 0; 1 */
    const char *channel_dir;  /* NULL: a private one */
    uint64_t status_every_ns; /* off a terminal; 0: never */
    const char *plot_path;    /* --plot: a chart redrawn from the log */
    uint64_t plot_every_ns;
    struct memfit_gpu_thresholds gpu_thresholds;
};

/* Children started for actions, reaped without blocking the loop. */
struct action {
    pid_t pid;
    enum memfit_level level;
    char *command;
};

#define MAX_ACTIONS 16

struct monitor {
    struct monitor_opts o;
    memfit_sampler *sampler;
    memfit_logfile *log;
    enum memfit_level level;
    pid_t child;
    bool child_done;
    int child_status;
    struct rusage child_usage;
    uint64_t oom_kill_start; /* cgroup oom_kill count at the start */
    uint64_t oom_kill_seen;
    uint64_t peak_rss;
    uint64_t peak_ws;
    uint64_t samples;
    struct action actions[MAX_ACTIONS];
    enum memfit_level gpu_level[MEMFIT_GPU_MAX_DEVICES];
    bool live_line;
    bool stop;
    int stop_signal;
    memfit_channel *channel;
    bool channel_failed;          /* said once; the monitor goes on */
    uint64_t level_since_wall_ns; /* when m->level was entered */
    bool scope_shown;
    enum memfit_scope scope; /* the one last announced */
    uint64_t fired_ns[4];    /* per level: when hooks and signals last fired */
    uint64_t status_ns;      /* when the last status line was printed */
    pid_t plot_pid;          /* the process redrawing the chart; 0: none */
    uint64_t plot_next_ns;   /* when to redraw it next */
    bool plot_failed;        /* said once */
};

/* SIG of --signal: a name with or without SIG (any case), or a number. */
static int parse_signal_name(const char *text)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (end != text && !*end)
        return errno == 0 && n >= 1 && n <= SIGRTMAX ? (int)n : 0;
    if (strncasecmp(text, "SIG", 3) == 0)
        text += 3;
    for (int sig = 1; sig <= SIGRTMAX; sig++) {
        const char *name = sigabbrev_np(sig);
        if (name && strcasecmp(name, text) == 0)
            return sig;
    }
    return 0;
}

/* LEVEL=SIG of --signal; prints the usage error itself. */
static bool parse_level_signal(const char *text, struct level_signal *out)
{
    static const enum memfit_level levels[] = {MEMFIT_LEVEL_WARNING, MEMFIT_LEVEL_CRITICAL,
                                               MEMFIT_LEVEL_DANGER};
    const char *eq = strchr(text, '=');
    if (!eq) {
        cli_usage("monitor", "--signal: '%s' is not LEVEL=SIG (e.g. warning=USR1)", text);
        return false;
    }
    size_t n = (size_t)(eq - text);
    bool found = false;
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]) && !found; i++) {
        const char *name = memfit_level_name(levels[i]);
        if (strlen(name) == n && strncmp(text, name, n) == 0) {
            out->level = levels[i];
            found = true;
        }
    }
    if (!found) {
        cli_usage("monitor", "--signal: unknown level '%.*s' in '%s' (warning, critical or danger)",
                  (int)n, text, text);
        return false;
    }
    if (!(out->sig = parse_signal_name(eq + 1))) {
        cli_usage("monitor", "--signal: unknown signal '%s' in '%s' (e.g. USR1, SIGUSR1, 10)",
                  eq + 1, text);
        return false;
    }
    return true;
}

enum {
    OPT_INTERVAL = 'i',
    OPT_DURATION = 'd',
    OPT_PID = 'p',
    OPT_LOG = 'l',
    OPT_QUIET = 'q',
    OPT_WARN = 256,
    OPT_CRITICAL,
    OPT_DANGER,
    OPT_HYST,
    OPT_ON_WARNING,
    OPT_ON_CRITICAL,
    OPT_ON_DANGER,
    OPT_NO_GPU,
    OPT_SIGNAL,
    OPT_REPEAT,
    OPT_CHANNEL,
    OPT_NO_CHANNEL,
    OPT_CHANNEL_DIR,
    OPT_STATUS_EVERY,
    OPT_PLOT,
    OPT_PLOT_EVERY,
    OPT_GPU_WARN,
    OPT_GPU_CRITICAL,
    OPT_GPU_DANGER
};

static const struct cli_option options[] = {
    {"interval", 'i', CLI_ARG_REQUIRED, OPT_INTERVAL},
    {"duration", 'd', CLI_ARG_REQUIRED, OPT_DURATION},
    {"pid", 'p', CLI_ARG_REQUIRED, OPT_PID},
    {"log", 'l', CLI_ARG_REQUIRED, OPT_LOG},
    {"quiet", 'q', CLI_ARG_NONE, OPT_QUIET},
    {"warn", 0, CLI_ARG_REQUIRED, OPT_WARN},
    {"warning", 0, CLI_ARG_REQUIRED, OPT_WARN},
    {"critical", 0, CLI_ARG_REQUIRED, OPT_CRITICAL},
    {"danger-available", 0, CLI_ARG_REQUIRED, OPT_DANGER},
    {"hysteresis", 0, CLI_ARG_REQUIRED, OPT_HYST},
    {"on-warning", 0, CLI_ARG_REQUIRED, OPT_ON_WARNING},
    {"on-critical", 0, CLI_ARG_REQUIRED, OPT_ON_CRITICAL},
    {"on-danger", 0, CLI_ARG_REQUIRED, OPT_ON_DANGER},
    {"no-gpu", 0, CLI_ARG_NONE, OPT_NO_GPU},
    {"signal", 0, CLI_ARG_REQUIRED, OPT_SIGNAL},
    {"repeat", 0, CLI_ARG_REQUIRED, OPT_REPEAT},
    {"channel", 0, CLI_ARG_NONE, OPT_CHANNEL},
    {"no-channel", 0, CLI_ARG_NONE, OPT_NO_CHANNEL},
    {"channel-dir", 0, CLI_ARG_REQUIRED, OPT_CHANNEL_DIR},
    {"status-every", 0, CLI_ARG_REQUIRED, OPT_STATUS_EVERY},
    {"plot", 0, CLI_ARG_REQUIRED, OPT_PLOT},
    {"plot-every", 0, CLI_ARG_REQUIRED, OPT_PLOT_EVERY},
    {"gpu-warn", 0, CLI_ARG_REQUIRED, OPT_GPU_WARN},
    {"gpu-critical", 0, CLI_ARG_REQUIRED, OPT_GPU_CRITICAL},
    {"gpu-danger", 0, CLI_ARG_REQUIRED, OPT_GPU_DANGER},
    {0},
};

/* Returns -1 to go on, else the exit code (after the help or a usage error). */
static int parse_args(int argc, char **argv, struct monitor_opts *o)
{
    o->interval_ns = 1000000000u;
    o->thresholds = memfit_alert_thresholds_default();
    o->gpu = true;
    o->channel = -1;
    o->status_every_ns = 60000000000ull;
    o->plot_every_ns = 0;
    o->gpu_thresholds = memfit_gpu_thresholds_default();
    struct cli_args a;
    cli_args_init(&a, "monitor", cmd_monitor_help, argc, argv, CLI_ARGS_IN_ORDER,
                  CLI_TABLES(options));
    int c;
    long long n;
    while ((c = cli_args_next(&a)) > 0) {
        const char *arg = a.value;
        switch (c) {
        case OPT_INTERVAL:
            if (!cli_opt_duration("monitor", "--interval", arg, &o->interval_ns))
                return CLI_EXIT_USAGE;
            if (o->interval_ns < 1000000u)
                return cli_usage("monitor", "--interval: '%s' is below 1ms", arg);
            break;
        case OPT_DURATION:
            if (!cli_opt_duration("monitor", "--duration", arg, &o->duration_ns))
                return CLI_EXIT_USAGE;
            break;
        case OPT_PID:
            if (!cli_opt_int("monitor", "--pid", arg, 1, 0x7fffffff, &n))
                return CLI_EXIT_USAGE;
            o->pid = (pid_t)n;
            break;
        case OPT_LOG:
            o->log_path = arg;
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_WARN:
            if (!cli_opt_percent("monitor", "--warn", arg, &o->thresholds.warning_percent))
                return CLI_EXIT_USAGE;
            break;
        case OPT_CRITICAL:
            if (!cli_opt_percent("monitor", "--critical", arg, &o->thresholds.critical_percent))
                return CLI_EXIT_USAGE;
            break;
        case OPT_DANGER:
            if (!cli_opt_size("monitor", "--danger-available", arg,
                              &o->thresholds.danger_available_bytes))
                return CLI_EXIT_USAGE;
            break;
        case OPT_HYST:
            if (!cli_opt_percent("monitor", "--hysteresis", arg, &o->thresholds.hysteresis_percent))
                return CLI_EXIT_USAGE;
            break;
        case OPT_ON_WARNING:
            o->on_level[MEMFIT_LEVEL_WARNING] = arg;
            break;
        case OPT_ON_CRITICAL:
            o->on_level[MEMFIT_LEVEL_CRITICAL] = arg;
            break;
        case OPT_ON_DANGER:
            o->on_level[MEMFIT_LEVEL_DANGER] = arg;
            break;
        case OPT_NO_GPU:
            o->gpu = false;
            break;
        case OPT_SIGNAL:
            if (o->n_signals == MAX_SIGNALS)
                return cli_usage("monitor", "--signal: at most %d", MAX_SIGNALS);
            if (!parse_level_signal(arg, &o->signals[o->n_signals]))
                return CLI_EXIT_USAGE;
            o->n_signals++;
            break;
        case OPT_REPEAT:
            if (!cli_opt_duration("monitor", "--repeat", arg, &o->repeat_ns))
                return CLI_EXIT_USAGE;
            break;
        case OPT_CHANNEL:
            o->channel = 1;
            break;
        case OPT_NO_CHANNEL:
            o->channel = 0;
            break;
        case OPT_CHANNEL_DIR:
            if (!arg[0])
                return cli_usage("monitor", "--channel-dir: empty path");
            o->channel_dir = arg;
            break;
        case OPT_STATUS_EVERY:
            if (!cli_opt_duration("monitor", "--status-every", arg, &o->status_every_ns))
                return CLI_EXIT_USAGE;
            break;
        case OPT_PLOT:
            if (!arg[0])
                return cli_usage("monitor", "--plot: empty path");
            o->plot_path = arg;
            break;
        case OPT_PLOT_EVERY:
            if (!cli_opt_duration("monitor", "--plot-every", arg, &o->plot_every_ns))
                return CLI_EXIT_USAGE;
            if (o->plot_every_ns < 100000000u)
                return cli_usage("monitor", "--plot-every: '%s' is below 100ms", arg);
            break;
        case OPT_GPU_WARN:
            if (!cli_opt_percent("monitor", "--gpu-warn", arg, &o->gpu_thresholds.warning_percent))
                return CLI_EXIT_USAGE;
            break;
        case OPT_GPU_CRITICAL:
            if (!cli_opt_percent("monitor", "--gpu-critical", arg,
                                 &o->gpu_thresholds.critical_percent))
                return CLI_EXIT_USAGE;
            break;
        default: /* OPT_GPU_DANGER */
            if (!cli_opt_percent("monitor", "--gpu-danger", arg, &o->gpu_thresholds.danger_percent))
                return CLI_EXIT_USAGE;
            break;
        }
    }
    if (c < 0)
        return a.status;
    if (a.n_operands > 0) {
        if (!a.dashdash)
            return cli_usage("monitor", "unexpected argument '%s' (a command goes after --)",
                             a.operands[0]);
        o->command = a.operands;
    }
    if (o->command && o->pid)
        return cli_usage("monitor", "--pid and a command exclude each other");
    if (o->channel == 0 && o->channel_dir)
        return cli_usage("monitor", "--channel-dir and --no-channel exclude each other");
    if (o->channel < 0)
        o->channel = o->command || o->channel_dir;
    if (o->plot_every_ns && !o->plot_path)
        return cli_usage("monitor", "--plot-every goes with --plot FILE");
    if (o->plot_path && (!o->log_path || strcmp(o->log_path, "-") == 0))
        return cli_usage("monitor", "--plot draws from the log: give --log FILE.jsonl too");
    if (o->plot_path && !o->plot_every_ns)
        o->plot_every_ns = 60000000000ull;
    if (o->n_signals && !o->command && !o->pid)
        return cli_usage("monitor", "--signal needs a command or --pid to send it to");
    if (memfit_alert_thresholds_check(&o->thresholds) != MEMFIT_OK)
        return cli_usage("monitor", "%s", memfit_last_error());
    o->gpu_thresholds.hysteresis_percent = o->thresholds.hysteresis_percent;
    if (memfit_gpu_thresholds_check(&o->gpu_thresholds) != MEMFIT_OK)
        return cli_usage("monitor", "%s", memfit_last_error());
    if (o->pid && kill(o->pid, 0) != 0 && errno == ESRCH)
        return cli_usage("monitor", "no process with pid %d", (int)o->pid);
    return -1;
}

/* Replaces {pid}, {level} and {percent} in an action command. */
static char *expand_action(const char *tmpl, pid_t pid, enum memfit_level level, double percent)
{
    char values[3][32];
    snprintf(values[0], sizeof(values[0]), "%d", (int)pid);
    snprintf(values[1], sizeof(values[1]), "%s", memfit_level_name(level));
    snprintf(values[2], sizeof(values[2]), "%.1f", percent);
    static const char *const keys[] = {"{pid}", "{level}", "{percent}"};
    size_t cap = strlen(tmpl) * 4 + 64, len = 0;
    char *out = memfit_malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = tmpl; *p;) {
        const char *add = NULL;
        size_t add_len = 1, skip = 1;
        for (int k = 0; k < 3 && !add; k++) {
            size_t kl = strlen(keys[k]);
            if (strncmp(p, keys[k], kl) == 0) {
                add = values[k];
                add_len = strlen(values[k]);
                skip = kl;
            }
        }
        if (!add)
            add = p;
        if (len + add_len + 1 > cap) {
            cap = (len + add_len + 1) * 2;
            char *grown = memfit_realloc(out, cap);
            if (!grown) {
                memfit_free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + len, add, add_len);
        len += add_len;
        p += skip;
    }
    out[len] = '\0';
    return out;
}

static void start_action(struct monitor *m, enum memfit_level level, double percent, bool repeat)
{
    const char *tmpl = m->o.on_level[level];
    if (!tmpl)
        return;
    for (int i = 0; repeat && i < MAX_ACTIONS; i++)
        if (m->actions[i].pid && m->actions[i].level == level)
            return; /* the last run is still going: no pile-up of repeats */
    pid_t target = m->child ? m->child : m->o.pid;
    char *command = expand_action(tmpl, target, level, percent);
    if (!command) {
        fprintf(stderr, "memfit monitor: out of memory for the %s action\n",
                memfit_level_name(level));
        return;
    }
    struct action *slot = NULL;
    for (int i = 0; i < MAX_ACTIONS && !slot; i++)
        if (m->actions[i].pid == 0)
            slot = &m->actions[i];
    if (!slot) {
        fprintf(stderr, "memfit monitor: too many actions still running; '%s' skipped\n", command);
        memfit_free(command);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        fprintf(stderr, "memfit monitor: cannot start action '%s': %s\n", command, strerror(errno));
        memfit_free(command);
        return;
    }
    *slot = (struct action){.pid = pid, .level = level, .command = command};
}

static void finish_action(struct monitor *m, struct action *a, int status)
{
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (m->log)
        memfit_logfile_write_action(m->log, memfit_now_ns(), a->level, a->command, code);
    if (code != 0 && !m->o.quiet)
        fprintf(stderr, "memfit monitor: %s action '%s' exited with %d\n",
                memfit_level_name(a->level), a->command, code);
    memfit_free(a->command);
    *a = (struct action){0};
}

static void clear_live_line(struct monitor *m)
{
    if (m->live_line)
        fputs("\r\033[K", stderr);
}

/* Reaps finished actions and the wrapped command without blocking. */
static void reap(struct monitor *m, bool wait_actions)
{
    for (int i = 0; i < MAX_ACTIONS; i++) {
        struct action *a = &m->actions[i];
        int status;
        if (a->pid && waitpid(a->pid, &status, wait_actions ? 0 : WNOHANG) == a->pid)
            finish_action(m, a, status);
    }
    int plot_status;
    if (m->plot_pid &&
        waitpid(m->plot_pid, &plot_status, wait_actions ? 0 : WNOHANG) == m->plot_pid) {
        m->plot_pid = 0;
        if (!(WIFEXITED(plot_status) && WEXITSTATUS(plot_status) == 0) && !m->plot_failed) {
            m->plot_failed = true; /* the redraw said why on stderr */
            clear_live_line(m);
            fprintf(stderr,
                    "memfit monitor: the chart %s could not be drawn; the monitor goes on\n",
                    m->o.plot_path);
        }
    }
    if (m->child && !m->child_done) {
        int status;
        if (wait4(m->child, &status, WNOHANG, &m->child_usage) == m->child) {
            m->child_done = true;
            m->child_status = status;
        }
    }
}

/* What the figures of a sample are about, for messages. */
static const char *scope_label(enum memfit_scope scope)
{
    switch (scope) {
    case MEMFIT_SCOPE_CGROUP:
        return "cgroup";
    case MEMFIT_SCOPE_PROCESS:
        return "process tree";
    case MEMFIT_SCOPE_MACHINE:
        return "machine";
    }
    return "?";
}

/* The live line's figures (also the status line off a terminal). */
static void format_status(const struct monitor *m, const struct memfit_sample *s, double elapsed_s,
                          char *buf, size_t cap)
{
    char ws[32], lim[32], rss[32];
    memfit_format_size(s->in_use_bytes, ws, sizeof(ws));
    memfit_format_size(s->limit_bytes, lim, sizeof(lim));
    if (s->have_process)
        memfit_format_size(s->process.rss_bytes, rss, sizeof(rss));
    else
        snprintf(rss, sizeof(rss), "-");
    snprintf(buf, cap, "%7.1fs  %s in use %s / %s (%.1f%%)  rss %s  psi %.2f  [%s]", elapsed_s,
             scope_label(s->scope), ws, lim, s->percent, rss,
             s->psi.present ? s->psi.some_avg10 : 0.0, memfit_level_name(m->level));
}

static void show_live(struct monitor *m, const struct memfit_sample *s, double elapsed_s)
{
    char line[256];
    format_status(m, s, elapsed_s, line, sizeof(line));
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
}

/* Off a terminal: the live line's figures as a plain line every --status-every. */
static void show_status(struct monitor *m, const struct memfit_sample *s, uint64_t t0)
{
    if (m->o.quiet || m->live_line || !m->o.status_every_ns)
        return;
    if (!m->status_ns)
        m->status_ns = t0;
    if (s->t_ns - m->status_ns < m->o.status_every_ns)
        return;
    m->status_ns = s->t_ns;
    char line[256];
    format_status(m, s, (double)(s->t_ns - t0) / 1e9, line, sizeof(line));
    fprintf(stderr, "memfit monitor: %s\n", line);
    fflush(stderr);
}

/* Says what is judged: on the first sample, and again when that changes
 * (a watched process gone, a cgroup limit set). */
static void show_scope(struct monitor *m, const struct memfit_sample *s)
{
    if (m->o.quiet || (m->scope_shown && s->scope == m->scope))
        return;
    m->scope_shown = true;
    m->scope = s->scope;
    char lim[32];
    memfit_format_size(s->limit_bytes, lim, sizeof(lim));
    clear_live_line(m);
    if (s->scope == MEMFIT_SCOPE_CGROUP)
        fprintf(stderr, "memfit monitor: judging cgroup %s (memory in use against its limit, %s)\n",
                s->cgroup.path, lim);
    else if (s->scope == MEMFIT_SCOPE_PROCESS)
        fprintf(stderr,
                "memfit monitor: no cgroup limit; judging process tree of %d (RSS) against "
                "available memory\n",
                (int)s->process.pid);
    else
        fprintf(stderr,
                "memfit monitor: no cgroup limit; judging the machine (memory in use against "
                "physical memory, %s)\n",
                lim);
}

static void send_signals(struct monitor *m, enum memfit_level level, uint64_t t_ns, bool repeat)
{
    pid_t target = m->child ? m->child : m->o.pid;
    if (!target || (m->child && m->child_done))
        return;
    for (unsigned i = 0; i < m->o.n_signals; i++) {
        const struct level_signal *ls = &m->o.signals[i];
        if (ls->level != level)
            continue;
        struct memfit_log_signal rec = {
            .level = level, .pid = target, .signal = ls->sig, .repeat = repeat};
        if (kill(target, ls->sig) != 0) {
            rec.error = strerror(errno);
            if (!m->o.quiet) {
                clear_live_line(m);
                fprintf(stderr, "memfit monitor: cannot send signal %d to %d: %s\n", ls->sig,
                        (int)target, rec.error);
            }
        }
        if (m->log)
            memfit_logfile_write_signal(m->log, t_ns, &rec);
    }
}

/* Hooks and signals: for each level entered since `prev`, and with --repeat
 * again for each level still reached, at most once per repeat interval. */
static void fire(struct monitor *m, enum memfit_level prev, const struct memfit_sample *s)
{
    for (int l = MEMFIT_LEVEL_WARNING; l <= (int)m->level; l++) {
        bool entering = l > (int)prev;
        if (!entering && !(m->o.repeat_ns && s->t_ns - m->fired_ns[l] >= m->o.repeat_ns))
            continue;
        m->fired_ns[l] = s->t_ns;
        start_action(m, (enum memfit_level)l, s->percent, !entering);
        send_signals(m, (enum memfit_level)l, s->t_ns, !entering);
    }
}

/* The state file; a failure to write it is said once and the monitor goes on. */
static void update_channel(struct monitor *m, const struct memfit_sample *s)
{
    if (!m->channel)
        return;
    pid_t pid = m->child ? m->child : m->o.pid;
    if (memfit_channel_update(m->channel, s, pid, m->level, m->level_since_wall_ns, NULL) ==
            MEMFIT_OK ||
        m->channel_failed)
        return;
    m->channel_failed = true;
    clear_live_line(m);
    fprintf(stderr, "memfit monitor: %s\n", memfit_last_error());
}

/* --plot: the chart redrawn from the log by a child process (a day of 1 s
 * samples takes ~0.35 s of CPU to read again), so sampling never waits; one
 * redraw at a time, at most every --plot-every. */
static void maybe_plot(struct monitor *m, uint64_t now)
{
    if (!m->o.plot_path || m->plot_pid || now < m->plot_next_ns)
        return;
    m->plot_next_ns = now + m->o.plot_every_ns;
    pid_t pid = fork();
    if (pid == 0) {
        enum memfit_status st = memfit_plot_redraw(m->o.log_path, NULL, NULL, m->o.plot_path, NULL);
        if (st != MEMFIT_OK)
            fprintf(stderr, "memfit monitor: --plot: %s\n", memfit_last_error());
        _exit(st == MEMFIT_OK ? 0 : 1);
    }
    if (pid > 0)
        m->plot_pid = pid;
}

/* The last chart, once the log holds the whole run. */
static void final_plot(struct monitor *m)
{
    if (!m->o.plot_path)
        return;
    struct memfit_plot_redraw_info info;
    if (memfit_plot_redraw(m->o.log_path, NULL, NULL, m->o.plot_path, &info) != MEMFIT_OK)
        fprintf(stderr, "memfit monitor: --plot: %s\n", memfit_last_error());
    else if (!m->o.quiet && info.written)
        fprintf(stderr, "memfit monitor: chart %s (%llu samples)\n", m->o.plot_path,
                (unsigned long long)info.n_samples);
}

/* One tick: sample, judge, log, act. */
static enum memfit_status tick(struct monitor *m, uint64_t t0)
{
    struct memfit_sample s;
    enum memfit_status st = memfit_sampler_read(m->sampler, &s);
    if (st != MEMFIT_OK)
        return st;
    if (m->child && !m->child_done && m->samples > 0 &&
        (!s.have_process || s.process.rss_bytes == 0))
        /* It is exiting (its memory already torn down, a zombie, or gone):
         * such a sample would show the memory gone, not freed. A running
         * program always has some RSS; the loop reaps it soon. */
        return MEMFIT_OK;
    m->samples++;
    if (s.have_process && s.process.rss_bytes != MEMFIT_SYS_UNKNOWN &&
        s.process.rss_bytes > m->peak_rss)
        m->peak_rss = s.process.rss_bytes;
    if (s.in_use_bytes != MEMFIT_SYS_UNKNOWN && s.in_use_bytes > m->peak_ws)
        m->peak_ws = s.in_use_bytes;

    if (m->samples == 1) {
        m->oom_kill_start = m->oom_kill_seen = s.have_cgroup ? s.cgroup.events_oom_kill : 0;
        if (m->log) {
            struct memfit_log_start start = {
                .pid = m->child ? m->child : m->o.pid,
                .command = m->o.command,
                .interval_s = (double)m->o.interval_ns / 1e9,
                .thresholds = m->o.thresholds,
            };
            if ((st = memfit_logfile_write_start(m->log, &start, &s)) != MEMFIT_OK)
                return st;
        }
    }
    show_scope(m, &s);
    enum memfit_level prev = m->level;
    m->level = memfit_alert_next(&m->o.thresholds, prev, s.in_use_bytes, s.limit_bytes);
    if (m->level != prev || m->samples == 1)
        m->level_since_wall_ns = s.wall_ns;
    if ((st = monitor_gpu_judge(&m->o.gpu_thresholds, m->gpu_level, &s, m->log, m->o.quiet,
                                m->live_line)) != MEMFIT_OK)
        return st;
    if (m->log && (st = memfit_logfile_write_sample(m->log, &s, m->level)) != MEMFIT_OK)
        return st;
    update_channel(m, &s);

    if (s.have_cgroup && s.cgroup.events_oom_kill != MEMFIT_SYS_UNKNOWN &&
        s.cgroup.events_oom_kill > m->oom_kill_seen) {
        m->oom_kill_seen = s.cgroup.events_oom_kill;
        if (m->log)
            memfit_logfile_write_oom(m->log, s.t_ns, s.cgroup.events_oom_kill);
        if (!m->o.quiet) {
            clear_live_line(m);
            fprintf(stderr, "memfit monitor: OOM kill in cgroup %s (oom_kill count %llu)\n",
                    s.cgroup.path, (unsigned long long)s.cgroup.events_oom_kill);
        }
    }
    if (m->level != prev) {
        if (m->log)
            memfit_logfile_write_level(m->log, &s, prev, m->level);
        if (!m->o.quiet) {
            char ws[32], lim[32];
            clear_live_line(m);
            fprintf(stderr, "memfit monitor: %s -> %s at %.1f%% (%s: %s of %s)\n",
                    memfit_level_name(prev), memfit_level_name(m->level), s.percent,
                    scope_label(s.scope), memfit_format_size(s.in_use_bytes, ws, sizeof(ws)),
                    memfit_format_size(s.limit_bytes, lim, sizeof(lim)));
        }
    }
    fire(m, prev, &s);
    if (m->live_line)
        show_live(m, &s, (double)(s.t_ns - t0) / 1e9);
    show_status(m, &s, t0);
    return MEMFIT_OK;
}

static int start_child(struct monitor *m, const sigset_t *old_mask)
{
    pid_t pid = fork();
    if (pid < 0)
        return cli_fail("monitor: cannot start '%s': %s", m->o.command[0], strerror(errno));
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, old_mask, NULL);
        execvp(m->o.command[0], m->o.command);
        fprintf(stderr, "memfit monitor: cannot run '%s': %s\n", m->o.command[0], strerror(errno));
        _exit(127);
    }
    m->child = pid;
    memfit_sampler_set_pid(m->sampler, pid);
    return CLI_EXIT_OK;
}

/* The exit record and message for the wrapped command; returns its exit status. */
static int report_child(struct monitor *m)
{
    int status = m->child_status;
    struct memfit_log_exit e = {.pid = m->child, .samples = m->samples};
    uint64_t ru_peak = (uint64_t)m->child_usage.ru_maxrss * 1024u;
    e.peak_rss_bytes = ru_peak > m->peak_rss ? ru_peak : m->peak_rss;
    e.peak_working_set_bytes = m->peak_ws;
    int rc;
    if (WIFSIGNALED(status)) {
        e.exit_code = -1;
        e.signal = WTERMSIG(status);
        rc = 128 + e.signal;
        /* The cgroup's counter may lag the child's death by a moment. */
        struct memfit_sample s;
        if (e.signal == SIGKILL && memfit_sampler_read(m->sampler, &s) == MEMFIT_OK &&
            s.have_cgroup && s.cgroup.events_oom_kill != MEMFIT_SYS_UNKNOWN &&
            s.cgroup.events_oom_kill > m->oom_kill_seen) {
            m->oom_kill_seen = s.cgroup.events_oom_kill;
            if (m->log)
                memfit_logfile_write_oom(m->log, s.t_ns, s.cgroup.events_oom_kill);
        }
        e.oom_killed = e.signal == SIGKILL && m->oom_kill_seen > m->oom_kill_start;
    } else {
        e.exit_code = WEXITSTATUS(status);
        rc = e.exit_code;
    }
    if (m->log)
        memfit_logfile_write_exit(m->log, memfit_now_ns(), &e);
    clear_live_line(m);
    char peak[32];
    memfit_format_size(e.peak_rss_bytes, peak, sizeof(peak));
    if (e.oom_killed)
        fprintf(stderr,
                "memfit monitor: '%s' was OOM-killed by the kernel (peak RSS %s, %d samples)\n",
                m->o.command[0], peak, (int)m->samples);
    else if (!m->o.quiet && e.signal)
        fprintf(stderr, "memfit monitor: '%s' killed by signal %d (peak RSS %s)\n", m->o.command[0],
                e.signal, peak);
    else if (!m->o.quiet && m->live_line)
        fprintf(stderr, "memfit monitor: '%s' exited with %d (peak RSS %s)\n", m->o.command[0],
                e.exit_code, peak);
    return rc;
}

static int run(struct monitor *m)
{
    sigset_t wait_set, old_mask;
    sigemptyset(&wait_set);
    sigaddset(&wait_set, SIGCHLD);
    sigaddset(&wait_set, SIGINT);
    sigaddset(&wait_set, SIGTERM);
    sigaddset(&wait_set, SIGHUP);
    sigprocmask(SIG_BLOCK, &wait_set, &old_mask);

    int rc = CLI_EXIT_OK;
    if (m->o.command && (rc = start_child(m, &old_mask)) != CLI_EXIT_OK)
        goto out;
    uint64_t t0 = memfit_now_ns();
    uint64_t next = t0;
    uint64_t term_sent_at = 0;
    for (;;) {
        /* No sample after the command is gone: its memory has been freed,
         * and such a point would only distort the trend. A child that has
         * exited but is not yet reaped (a zombie, RSS 0) counts as gone. */
        reap(m, false);
        if (m->child_done && m->samples > 0)
            break;
        enum memfit_status st = tick(m, t0);
        if (st != MEMFIT_OK) {
            clear_live_line(m);
            rc = cli_fail_status(st);
            if (m->child && !m->child_done)
                kill(m->child, SIGTERM);
            break;
        }
        reap(m, false);
        if (m->child_done || (m->stop && !m->child))
            break;
        uint64_t now = memfit_now_ns();
        maybe_plot(m, now);
        if (m->o.duration_ns && now - t0 >= m->o.duration_ns) {
            if (!m->child)
                break;
            if (!term_sent_at) {
                kill(m->child, SIGTERM);
                term_sent_at = now;
            } else if (now - term_sent_at > 5000000000u) {
                kill(m->child, SIGKILL);
            }
        }
        next += m->o.interval_ns;
        if (next < now)
            next = now; /* fell behind (suspended?): do not burst */
        /* Wait for the next tick, waking at once on a signal. */
        while ((now = memfit_now_ns()) < next) {
            uint64_t left = next - now;
            struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
            int sig = sigtimedwait(&wait_set, NULL, &ts);
            if (sig == SIGCHLD) {
                reap(m, false);
                if (m->child_done)
                    break;
            } else if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
                m->stop = true;
                m->stop_signal = sig;
                if (m->child && !m->child_done)
                    kill(m->child, sig); /* pass it on; we stop when it exits */
                else
                    break;
            }
        }
    }
    clear_live_line(m);
    if (m->child) {
        if (!m->child_done) {
            int status;
            if (wait4(m->child, &status, 0, &m->child_usage) == m->child) {
                m->child_done = true;
                m->child_status = status;
            }
        }
        if (m->child_done && rc == CLI_EXIT_OK)
            rc = report_child(m);
    } else if (m->stop_signal == SIGINT) {
        rc = CLI_EXIT_OK; /* Ctrl-C is how a plain monitor run ends */
    }
    reap(m, true);
out:
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    return rc;
}

/* The state file's directory, and its path in the environment the command
 * (and the hooks) inherit. */
static int open_channel(struct monitor *m)
{
    struct memfit_channel_options co = memfit_channel_options_default();
    co.dir = m->o.channel_dir;
    co.interval_s = (double)m->o.interval_ns / 1e9;
    co.thresholds = m->o.thresholds;
    enum memfit_status st = memfit_channel_open(&co, &m->channel);
    if (st != MEMFIT_OK)
        return m->o.channel_dir ? cli_usage("monitor", "--channel-dir: %s", memfit_last_error())
                                : cli_fail_status(st);
    char pid[24];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    if (setenv("MEMFIT_PRESSURE_FILE", memfit_channel_state_path(m->channel), 1) != 0 ||
        setenv("MEMFIT_MONITOR_PID", pid, 1) != 0) {
        memfit_channel_close(m->channel);
        m->channel = NULL;
        return cli_fail("monitor: cannot set the environment: %s", strerror(errno));
    }
    if (!m->o.quiet && !m->o.command)
        fprintf(stderr, "memfit monitor: state file %s\n", memfit_channel_state_path(m->channel));
    return CLI_EXIT_OK;
}

int cmd_monitor(int argc, char **argv)
{
    struct monitor m = {0};
    int rc = parse_args(argc, argv, &m.o);
    if (rc >= 0)
        return rc;

    struct memfit_sampler_options so = memfit_sampler_options_default();
    so.pid = m.o.pid;
    so.gpu = m.o.gpu;
    enum memfit_status st = memfit_sampler_create(&so, &m.sampler);
    if (st != MEMFIT_OK)
        return cli_fail_status(st);
    if (m.o.log_path && (st = memfit_logfile_open(m.o.log_path, &m.log)) != MEMFIT_OK) {
        memfit_sampler_destroy(m.sampler);
        return cli_usage("monitor", "--log: %s", memfit_last_error());
    }
    m.live_line = !m.o.quiet && cli_isatty(2);
    if (m.o.channel && (rc = open_channel(&m)) != CLI_EXIT_OK) {
        memfit_logfile_close(m.log);
        memfit_sampler_destroy(m.sampler);
        return rc;
    }
    rc = run(&m);
    memfit_channel_close(m.channel);
    memfit_logfile_close(m.log);
    final_plot(&m);
    memfit_sampler_destroy(m.sampler);
    return rc;
}
