/* Preloaded before libfaketime for the skewed-clock e2e test.
 *
 * With FAKETIME_DONT_FAKE_MONOTONIC=1 (only the wall clock is skewed, as on a
 * machine whose clock is wrong), libfaketime 0.9.10 still rewrites absolute
 * CLOCK_MONOTONIC deadlines of clock_nanosleep() as if they were wall-clock
 * times, and the kernel answers EINVAL (Python's time.sleep() raises).
 * Monotonic sleeps need no faking: hand them to the kernel unchanged; every
 * other clock goes on to libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request,
                    struct timespec *remain) {
    if (clock == CLOCK_MONOTONIC) {
        return syscall(SYS_clock_nanosleep, clock, flags, request, remain) == 0 ? 0 : errno;
    }
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (next == NULL) {
        next = dlsym(RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock, flags, request, remain);
}
