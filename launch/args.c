#include "launch/args.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_default(FILE *f, const loom_arg *a) {
    switch (a->kind) {
    case LOOM_ARG_STR: {
        const char *s = *(const char **)a->dst;
        if (s) fprintf(f, " (default: %s)", s);
        break;
    }
    case LOOM_ARG_INT:
    case LOOM_ARG_BYTES: fprintf(f, " (default: %" PRId64 ")", *(int64_t *)a->dst); break;
    case LOOM_ARG_FLOAT: fprintf(f, " (default: %g)", *(double *)a->dst); break;
    case LOOM_ARG_FLAG:
    case LOOM_ARG_STRS: break;
    }
}

static void print_help(const char *synopsis, const char *about, const loom_arg *args, int nargs) {
    printf("usage: loom %s\n\n", synopsis);
    if (about) printf("%s\n\n", about);
    printf("options:\n");
    for (int i = 0; i < nargs; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", args[i].name, args[i].metavar ? " " : "",
                 args[i].metavar ? args[i].metavar : "");
        printf("  %-24s %s", left, args[i].help);
        print_default(stdout, &args[i]);
        printf("\n");
    }
    printf("  %-24s %s\n", "--help", "show this help");
}

static bool parse_int(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static bool parse_bytes(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) return false;
    double mul = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mul = 1024.0; break;
        case 'm': case 'M': mul = 1024.0 * 1024; break;
        case 'g': case 'G': mul = 1024.0 * 1024 * 1024; break;
        case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; break;
        default: return false;
        }
        end++;
        if (*end == 'i') end++;
        if (*end == 'B' || *end == 'b') end++;
        if (*end) return false;
    }
    v *= mul;
    if (v > 9.0e18) return false;
    *out = (int64_t)v;
    return true;
}

loom_args_result loom_args_parse(const char *synopsis, const char *about, const loom_arg *args,
                                 int nargs, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            print_help(synopsis, about, args, nargs);
            return LOOM_ARGS_HELP;
        }
        const loom_arg *a = NULL;
        const char *inline_val = NULL;
        for (int j = 0; j < nargs; j++) {
            size_t n = strlen(args[j].name);
            if (!strncmp(arg, args[j].name, n) && (arg[n] == 0 || arg[n] == '=')) {
                a = &args[j];
                if (arg[n] == '=') inline_val = arg + n + 1;
                break;
            }
        }
        if (!a) {
            fprintf(stderr, "loom: unknown option '%s'\nusage: loom %s\n", arg, synopsis);
            return LOOM_ARGS_ERROR;
        }
        if (a->kind == LOOM_ARG_FLAG) {
            if (inline_val) {
                fprintf(stderr, "loom: option %s takes no value\n", a->name);
                return LOOM_ARGS_ERROR;
            }
            *(bool *)a->dst = true;
            continue;
        }
        const char *val = inline_val;
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "loom: option %s needs a value (%s)\nusage: loom %s\n", a->name,
                        a->metavar ? a->metavar : "value", synopsis);
                return LOOM_ARGS_ERROR;
            }
            val = argv[++i];
        }
        bool ok = true;
        switch (a->kind) {
        case LOOM_ARG_STR: *(const char **)a->dst = val; break;
        case LOOM_ARG_STRS: {
            loom_arg_strs *l = a->dst;
            if (l->n == LOOM_ARG_STRS_MAX) {
                fprintf(stderr, "loom: option %s: given more than %d times\n", a->name, LOOM_ARG_STRS_MAX);
                return LOOM_ARGS_ERROR;
            }
            l->opt[l->n] = a->name;
            l->v[l->n++] = val;
            break;
        }
        case LOOM_ARG_INT: ok = parse_int(val, (int64_t *)a->dst); break;
        case LOOM_ARG_BYTES: ok = parse_bytes(val, (int64_t *)a->dst); break;
        case LOOM_ARG_FLOAT: {
            char *end;
            errno = 0;
            double v = strtod(val, &end);
            ok = !errno && end != val && !*end && isfinite(v);
            if (ok) *(double *)a->dst = v;
            break;
        }
        case LOOM_ARG_FLAG: break;
        }
        if (!ok) {
            fprintf(stderr, "loom: option %s: '%s' is not a valid %s\n", a->name, val,
                    a->kind == LOOM_ARG_FLOAT ? "number" : a->kind == LOOM_ARG_BYTES ? "size" : "integer");
            return LOOM_ARGS_ERROR;
        }
    }
    return LOOM_ARGS_OK;
}
