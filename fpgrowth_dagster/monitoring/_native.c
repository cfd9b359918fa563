/*
 * Native helpers of fpgrowth_dagster.monitoring, for what Python cannot do by itself.
 *
 * 1. The sender of a signal. Python signal handlers never see siginfo, and a thread waiting in
 *    sigwaitinfo() only gets a process-directed signal when every other thread blocks it, which
 *    Dagster's step process (queue feeder and termination threads) does not. So an SA_SIGINFO
 *    handler is put in front of the installed one: it stores si_pid, si_uid, si_code and the
 *    sender's /proc/PID/cmdline (read at once, so a short-lived `kill` is still named), then
 *    calls the previous handler (Python's), whichever thread the kernel picked.
 *
 * 2. A resident-memory watchdog running as a native thread. A Python sampler thread cannot run
 *    while C code (pyfim) holds the GIL; this one reads /proc/self/statm regardless, keeps the
 *    peak, and when the budget is exceeded sends SIGINT to the guarded thread once: pyfim aborts
 *    on SIGINT and Python raises the interrupt, which the guard turns into a clear error.
 *
 * Only async-signal-safe calls (open, read, close, sigaction, raise) are made in the handler.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_SIGNAL 65
#define CMDLINE_BYTES 4096

typedef struct {
    volatile sig_atomic_t count;
    volatile pid_t pid;
    volatile uid_t uid;
    volatile int code;
    volatile pid_t tid;
    volatile int cmdline_len;
    volatile int comm_len;
    volatile pid_t ppid;
    char cmdline[CMDLINE_BYTES];
    char comm[32];
} signal_record;

static signal_record records[MAX_SIGNAL];
static struct sigaction previous[MAX_SIGNAL];

/* Read /proc/PID/NAME into buf (async-signal-safe); returns the number of bytes read. */
static int read_proc_file(pid_t pid, const char *name, char *buf, int size) {
    char path[64] = "/proc/";
    char digits[16];
    int n = 0, i = 6;
    unsigned int value = (unsigned int)pid;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value && n < 15);
    while (n > 0) path[i++] = digits[--n];
    path[i++] = '/';
    while (*name && i < (int)sizeof path - 1) path[i++] = *name++;
    path[i] = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t got, total = 0;
    while (total < size && (got = read(fd, buf + total, size - total)) > 0) total += got;
    close(fd);
    return (int)total;
}

/* The sender's command line, name and parent. A sender that already exited (a zombie, as a
 * short-lived `kill` often is by the time the handler runs) has an empty cmdline, but its comm
 * and stat (hence its parent, e.g. the shell that ran kill) remain until it is reaped. */
static void describe_sender(signal_record *rec, pid_t pid) {
    char stat[512];
    rec->cmdline_len = read_proc_file(pid, "cmdline", rec->cmdline, CMDLINE_BYTES);
    int comm = read_proc_file(pid, "comm", rec->comm, (int)sizeof rec->comm);
    if (comm > 0 && rec->comm[comm - 1] == '\n') comm--;
    rec->comm_len = comm;
    rec->ppid = 0;
    int len = read_proc_file(pid, "stat", stat, (int)sizeof stat - 1);
    if (len <= 0) return;
    int close_paren = -1;
    for (int k = 0; k < len; k++)
        if (stat[k] == ')') close_paren = k;
    /* after "pid (comm)": " S PPID ..." */
    int k = close_paren + 4;
    if (close_paren < 0 || k >= len) return;
    pid_t ppid = 0;
    while (k < len && stat[k] >= '0' && stat[k] <= '9') ppid = ppid * 10 + (stat[k++] - '0');
    rec->ppid = ppid;
}

static void recorder(int signum, siginfo_t *info, void *ucontext) {
    int saved_errno = errno;
    if (signum <= 0 || signum >= MAX_SIGNAL) return;
    signal_record *rec = &records[signum];
    rec->pid = info->si_pid;
    rec->uid = info->si_uid;
    rec->code = info->si_code;
    rec->tid = (pid_t)syscall(SYS_gettid);
    /* si_code <= 0: sent by a process (kill, tgkill, sigqueue), so si_pid names it. */
    if (info->si_code <= 0 && info->si_pid > 0) {
        describe_sender(rec, info->si_pid);
    } else {
        rec->cmdline_len = 0;
        rec->comm_len = 0;
        rec->ppid = 0;
    }
    rec->count = rec->count + 1;
    struct sigaction *prev = &previous[signum];
    errno = saved_errno;
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) prev->sa_sigaction(signum, info, ucontext);
    } else if (prev->sa_handler == SIG_DFL) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(signum, &dfl, NULL);
        raise(signum);
    } else if (prev->sa_handler != SIG_IGN) {
        prev->sa_handler(signum);
    }
    errno = saved_errno;
}

static int parse_signum(PyObject *args, int *signum) {
    if (!PyArg_ParseTuple(args, "i", signum)) return -1;
    if (*signum <= 0 || *signum >= MAX_SIGNAL || *signum == SIGKILL || *signum == SIGSTOP) {
        PyErr_Format(PyExc_ValueError, "signal number cannot be recorded: %d", *signum);
        return -1;
    }
    return 0;
}

static int is_recorder(const struct sigaction *act) {
    return (act->sa_flags & SA_SIGINFO) && act->sa_sigaction == recorder;
}

static PyObject *install_recorder(PyObject *self, PyObject *args) {
    int signum;
    struct sigaction current, act;
    if (parse_signum(args, &signum) < 0) return NULL;
    if (sigaction(signum, NULL, &current) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    if (is_recorder(&current)) Py_RETURN_FALSE;
    previous[signum] = current;
    act = current;
    act.sa_sigaction = recorder;
    act.sa_flags = current.sa_flags | SA_SIGINFO;
    if (sigaction(signum, &act, NULL) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

static PyObject *uninstall_recorder(PyObject *self, PyObject *args) {
    int signum;
    struct sigaction current;
    if (parse_signum(args, &signum) < 0) return NULL;
    if (sigaction(signum, NULL, &current) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    if (!is_recorder(&current)) Py_RETURN_FALSE;
    if (sigaction(signum, &previous[signum], NULL) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

static PyObject *recorder_installed(PyObject *self, PyObject *args) {
    int signum;
    struct sigaction current;
    if (parse_signum(args, &signum) < 0) return NULL;
    if (sigaction(signum, NULL, &current) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    return PyBool_FromLong(is_recorder(&current));
}

static PyObject *last_delivery(PyObject *self, PyObject *args) {
    int signum;
    if (parse_signum(args, &signum) < 0) return NULL;
    signal_record *rec = &records[signum];
    if (rec->count == 0) Py_RETURN_NONE;
    return Py_BuildValue("{s:i,s:i,s:I,s:i,s:i,s:y#,s:y#,s:i}", "count", (int)rec->count, "pid", (int)rec->pid,
                         "uid", (unsigned int)rec->uid, "code", rec->code, "tid", (int)rec->tid, "cmdline",
                         rec->cmdline, (Py_ssize_t)rec->cmdline_len, "comm", rec->comm, (Py_ssize_t)rec->comm_len,
                         "ppid", (int)rec->ppid);
}

/* ---- resident-memory watchdog ---- */

static pthread_t watchdog_thread;
static pthread_t watchdog_target;
static volatile int watchdog_running = 0;
static volatile int watchdog_tripped = 0;
static volatile long long watchdog_budget = 0;
static volatile long long watchdog_peak = 0;
static volatile long long watchdog_trip_rss = 0;
static volatile long watchdog_interval_ns = 50000000L;
static volatile long long watchdog_samples = 0;

static long long resident_bytes(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) return -1;
    buf[got] = 0;
    long long size = 0, resident = 0;
    char *p = buf;
    while (*p >= '0' && *p <= '9') size = size * 10 + (*p++ - '0');
    while (*p == ' ') p++;
    while (*p >= '0' && *p <= '9') resident = resident * 10 + (*p++ - '0');
    return resident * (long long)sysconf(_SC_PAGESIZE);
}

static void *watchdog_main(void *arg) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* never take a process-directed signal */
    struct timespec pause;
    while (watchdog_running) {
        long long rss = resident_bytes();
        watchdog_samples++;
        if (rss > watchdog_peak) watchdog_peak = rss;
        if (watchdog_budget > 0 && rss > watchdog_budget && !watchdog_tripped) {
            watchdog_trip_rss = rss;
            watchdog_tripped = 1;
            pthread_kill(watchdog_target, SIGINT);
        }
        pause.tv_sec = watchdog_interval_ns / 1000000000L;
        pause.tv_nsec = watchdog_interval_ns % 1000000000L;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static PyObject *watchdog_start(PyObject *self, PyObject *args) {
    long long budget;
    double interval;
    unsigned long target;
    if (!PyArg_ParseTuple(args, "Ldk", &budget, &interval, &target)) return NULL;
    if (watchdog_running) {
        PyErr_SetString(PyExc_RuntimeError, "the memory watchdog is already running");
        return NULL;
    }
    watchdog_budget = budget;
    watchdog_interval_ns = (long)(interval * 1e9);
    if (watchdog_interval_ns < 1000000L) watchdog_interval_ns = 1000000L;
    watchdog_tripped = 0;
    watchdog_trip_rss = 0;
    watchdog_samples = 0;
    watchdog_peak = resident_bytes();
    watchdog_target = (pthread_t)target;
    watchdog_running = 1;
    int err = pthread_create(&watchdog_thread, NULL, watchdog_main, NULL);
    if (err != 0) {
        watchdog_running = 0;
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *watchdog_state(void) {
    return Py_BuildValue("{s:O,s:L,s:L,s:L,s:L}", "tripped", watchdog_tripped ? Py_True : Py_False, "peak_rss",
                         (long long)watchdog_peak, "trip_rss", (long long)watchdog_trip_rss, "budget",
                         (long long)watchdog_budget, "samples", (long long)watchdog_samples);
}

static PyObject *watchdog_stop(PyObject *self, PyObject *noargs) {
    if (watchdog_running) {
        watchdog_running = 0;
        Py_BEGIN_ALLOW_THREADS
        pthread_join(watchdog_thread, NULL);
        Py_END_ALLOW_THREADS
    }
    return watchdog_state();
}

static PyObject *watchdog_status(PyObject *self, PyObject *noargs) { return watchdog_state(); }

static PyMethodDef methods[] = {
    {"install_recorder", install_recorder, METH_VARARGS, "Record the sender of SIGNUM in front of its current handler."},
    {"uninstall_recorder", uninstall_recorder, METH_VARARGS, "Put back the handler that install_recorder wrapped."},
    {"recorder_installed", recorder_installed, METH_VARARGS, "True when the recorder is SIGNUM's current handler."},
    {"last_delivery", last_delivery, METH_VARARGS, "The last recorded delivery of SIGNUM as a dict, or None."},
    {"watchdog_start", watchdog_start, METH_VARARGS, "watchdog_start(budget_bytes, interval_s, thread_ident)."},
    {"watchdog_stop", watchdog_stop, METH_NOARGS, "Stop the watchdog; returns its state."},
    {"watchdog_status", watchdog_status, METH_NOARGS, "The watchdog's state."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", "Signal senders (siginfo) and a native resident-memory watchdog.", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
