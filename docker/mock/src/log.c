/* xenmig mock: xentoollog (stdio logger, xtl_* helpers) and error reporting. */
#include "mock_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

struct xentoollog_logger_stdiostream {
    xentoollog_logger vtable;
    FILE *f;
    xentoollog_level min_level;
    unsigned flags;
};

static const char *level_names[XTL_NUM_LEVELS] = {
    "none", "debug", "verbose", "detail", "progress", "info", "notice", "warning", "error", "critical",
};

const char *xtl_level_to_string(xentoollog_level l)
{
    if ((int)l < 0 || l >= XTL_NUM_LEVELS)
        return "unknown";
    return level_names[l];
}

static void stdio_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                           const char *context, const char *format, va_list al)
{
    struct xentoollog_logger_stdiostream *s = (void *)lg;
    if (level < s->min_level)
        return;
    if (s->flags & XTL_STDIOSTREAM_SHOW_PID)
        fprintf(s->f, "[%ld] ", (long)getpid());
    if (s->flags & XTL_STDIOSTREAM_SHOW_DATE) {
        char buf[32];
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S ", &tm);
        fputs(buf, s->f);
    }
    if (context)
        fprintf(s->f, "%s: ", context);
    if (level != XTL_INFO && level != XTL_PROGRESS)
        fprintf(s->f, "%s: ", xtl_level_to_string(level));
    vfprintf(s->f, format, al);
    if (errnoval >= 0)
        fprintf(s->f, ": %s", strerror(errnoval));
    fputc('\n', s->f);
    fflush(s->f);
}

static void stdio_progress(xentoollog_logger *lg, const char *context, const char *doing_what,
                           int percent, unsigned long done, unsigned long total)
{
    struct xentoollog_logger_stdiostream *s = (void *)lg;
    if (s->flags & XTL_STDIOSTREAM_HIDE_PROGRESS || XTL_PROGRESS < s->min_level)
        return;
    fprintf(s->f, "%s%s%s: %d%% (%lu/%lu)\n", context ? context : "", context ? ": " : "",
            doing_what, percent, done, total);
    fflush(s->f);
}

static void stdio_destroy(xentoollog_logger *lg)
{
    free(lg);
}

xentoollog_logger_stdiostream *xtl_createlogger_stdiostream(FILE *f, xentoollog_level min_level,
                                                            unsigned flags)
{
    struct xentoollog_logger_stdiostream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->vtable.vmessage = stdio_vmessage;
    s->vtable.progress = stdio_progress;
    s->vtable.destroy = stdio_destroy;
    s->f = f;
    s->min_level = min_level;
    s->flags = flags;
    return s;
}

void xtl_stdiostream_set_minlevel(xentoollog_logger_stdiostream *s, xentoollog_level min_level)
{
    if (s)
        s->min_level = min_level;
}

void xtl_stdiostream_adjust_flags(xentoollog_logger_stdiostream *s, unsigned set_flags,
                                  unsigned clear_flags)
{
    if (s)
        s->flags = (s->flags & ~clear_flags) | set_flags;
}

void xtl_logger_destroy(xentoollog_logger *logger)
{
    if (logger && logger->destroy)
        logger->destroy(logger);
}

void xtl_logv(xentoollog_logger *logger, xentoollog_level level, int errnoval,
              const char *context, const char *format, va_list al)
{
    int saved = errno;
    if (logger && logger->vmessage)
        logger->vmessage(logger, level, errnoval, context, format, al);
    errno = saved;
}

void xtl_log(xentoollog_logger *logger, xentoollog_level level, int errnoval,
             const char *context, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    xtl_logv(logger, level, errnoval, context, format, ap);
    va_end(ap);
}

void xtl_progress(xentoollog_logger *logger, const char *context, const char *doing_what,
                  unsigned long done, unsigned long total)
{
    int percent = total ? (int)((done * 100) / total) : 0;
    if (logger && logger->progress)
        logger->progress(logger, context, doing_what, percent, done, total);
}

xentoollog_logger *mock_default_logger(void)
{
    return (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
}

void mock_logv(xentoollog_logger *lg, xentoollog_level lvl, int err, const char *ctx,
               const char *fmt, va_list ap)
{
    if (lg) {
        xtl_logv(lg, lvl, err, ctx, fmt, ap);
    } else {
        int saved = errno;
        fprintf(stderr, "%s: ", ctx);
        vfprintf(stderr, fmt, ap);
        if (err >= 0)
            fprintf(stderr, ": %s", strerror(err));
        fputc('\n', stderr);
        errno = saved;
    }
}

int xc_fail(xc_interface *xch, int err, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    if (xch) {
        xch->last_error.code = err == EINVAL ? XC_INVALID_PARAM
                             : err == ENOMEM ? XC_OUT_OF_MEMORY : XC_INTERNAL_ERROR;
        vsnprintf(xch->last_error.message, sizeof(xch->last_error.message), fmt, ap2);
    }
    mock_logv(xch ? xch->logger : NULL, XTL_ERROR, err, "xc", fmt, ap);
    va_end(ap2);
    va_end(ap);
    errno = err;
    return -1;
}

int fm_fail(xenforeignmemory_handle *fm, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mock_logv(fm ? fm->logger : NULL, XTL_ERROR, err, "xenforeignmemory", fmt, ap);
    va_end(ap);
    errno = err;
    return -1;
}

const char *xc_error_code_to_desc(int code)
{
    switch (code) {
    case XC_ERROR_NONE: return "No error details";
    case XC_INTERNAL_ERROR: return "Internal error";
    case XC_INVALID_KERNEL: return "Invalid kernel";
    case XC_INVALID_PARAM: return "Invalid configuration";
    case XC_OUT_OF_MEMORY: return "Out of memory";
    }
    return "Unknown error code";
}

const xc_error *xc_get_last_error(xc_interface *xch)
{
    static const xc_error none = { XC_ERROR_NONE, "" };
    return xch ? &xch->last_error : &none;
}

void xc_clear_last_error(xc_interface *xch)
{
    if (xch) {
        xch->last_error.code = XC_ERROR_NONE;
        xch->last_error.message[0] = 0;
    }
}
