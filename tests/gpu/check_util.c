/* tests/gpu/check_util.c — see check_util.h. */
#include "tests/gpu/check_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ITEMS 512

typedef struct {
    char name[96];
    int pass;
    char detail[256];
} item;

static item checks[MAX_ITEMS], metrics[MAX_ITEMS], notes[64];
static double metric_v[MAX_ITEMS];
static int n_checks, n_metrics, n_notes, n_failed;

void ck_record(const char *name, int pass, const char *fmt, ...) {
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    printf("%-4s  %-44s %s\n", pass ? "PASS" : "FAIL", name, detail);
    fflush(stdout);
    if (!pass) n_failed++;
    if (n_checks < MAX_ITEMS) {
        item *c = &checks[n_checks++];
        snprintf(c->name, sizeof c->name, "%s", name);
        snprintf(c->detail, sizeof c->detail, "%s", detail);
        c->pass = pass;
    }
}

int ck_status(const char *name, loom_status st) {
    ck_record(name, 0, "error: %s", loom_status_message(st));
    loom_status_free(st);
    return 0;
}

void ck_metric(const char *name, double value, const char *unit) {
    printf("      %-44s %12.3f %s\n", name, value, unit);
    fflush(stdout);
    if (n_metrics < MAX_ITEMS) {
        item *m = &metrics[n_metrics];
        snprintf(m->name, sizeof m->name, "%s", name);
        snprintf(m->detail, sizeof m->detail, "%s", unit);
        metric_v[n_metrics++] = value;
    }
}

void ck_note(const char *key, const char *fmt, ...) {
    char v[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof v, fmt, ap);
    va_end(ap);
    printf("%-12s %s\n", key, v);
    fflush(stdout);
    if (n_notes < 64) {
        snprintf(notes[n_notes].name, sizeof notes[n_notes].name, "%s", key);
        snprintf(notes[n_notes].detail, sizeof notes[n_notes].detail, "%s", v);
        n_notes++;
    }
}

int ck_failures(void) { return n_failed; }

void ck_summary(void) {
    printf("\n== summary ==\n");
    for (int i = 0; i < n_notes; i++) printf("%-12s %s\n", notes[i].name, notes[i].detail);
    int per_kernel = 0, per_kernel_ok = 0;
    for (int i = 0; i < n_checks; i++) {
        const item *c = &checks[i];
        const int kernel = !strncmp(c->name, "matmul ", 7) || !strncmp(c->name, "actq ", 5) ||
                           !strncmp(c->name, "embed ", 6);
        per_kernel += kernel, per_kernel_ok += kernel && c->pass;
        if (!kernel || !c->pass) printf("%-4s  %-44s %s\n", c->pass ? "PASS" : "FAIL", c->name, c->detail);
    }
    printf("%-4s  %-44s %d of %d passed (failures listed above)\n", per_kernel_ok == per_kernel ? "PASS" : "FAIL",
           "matmul / actq / embed per type", per_kernel_ok, per_kernel);
    for (int i = 0; i < n_metrics; i++) printf("      %-44s %12.3f %s\n", metrics[i].name, metric_v[i], metrics[i].detail);
}
int ck_count(void) { return n_checks; }

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

void ck_write_json(const char *path) {
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "device_check: cannot write %s\n", path);
        return;
    }
    fprintf(f, "{\n  \"notes\": {");
    for (int i = 0; i < n_notes; i++) {
        fprintf(f, "%s\n    ", i ? "," : "");
        json_str(f, notes[i].name);
        fprintf(f, ": ");
        json_str(f, notes[i].detail);
    }
    fprintf(f, "\n  },\n  \"checks\": [");
    for (int i = 0; i < n_checks; i++) {
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, checks[i].name);
        fprintf(f, ", \"pass\": %s, \"detail\": ", checks[i].pass ? "true" : "false");
        json_str(f, checks[i].detail);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"metrics\": [");
    for (int i = 0; i < n_metrics; i++) {
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, metrics[i].name);
        fprintf(f, ", \"value\": %.6g, \"unit\": ", isfinite(metric_v[i]) ? metric_v[i] : -1.0);
        json_str(f, metrics[i].detail);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"failed\": %d,\n  \"total\": %d\n}\n", n_failed, n_checks);
    fclose(f);
}

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ck_randn(float *x, size_t n, double sd, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        const uint64_t r = mix(&s);
        const double u = (double)(r & 0xffff) + (double)((r >> 16) & 0xffff) + (double)((r >> 32) & 0xffff) +
                         (double)(r >> 48);
        x[i] = (float)((u - 2 * 65535.0) / 37837.22649 * sd);
    }
}

void *ck_dup(loom_device *d, const void *h, size_t bytes, const char *what) {
    void *p = NULL;
    loom_status st = loom_device_alloc(d, bytes, what, &p);
    if (!st && h) st = loom_device_upload(d, p, h, bytes);
    if (st) {
        if (p) d->vt->free(d, p);
        ck_status(what, st);
        return NULL;
    }
    return p;
}

void ck_upload(loom_device *d, void *dp, const void *h, size_t bytes) {
    loom_status st = loom_device_upload(d, dp, h, bytes);
    if (st) ck_status("upload", st);
}

int ck_fetch(loom_device *d, void *h, const void *dp, size_t bytes, const char *what) {
    loom_status st = loom_device_download(d, h, dp, bytes);
    if (!st) st = loom_device_sync(d);
    if (st) return ck_status(what, st);
    return 1;
}

double ck_maxdiff(const float *a, const float *ref, size_t n, double *ref_max) {
    double m = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)ref[i]);
        if (d > m || d != d) m = d != d ? INFINITY : d;
        if (fabs((double)ref[i]) > r) r = fabs((double)ref[i]);
    }
    if (ref_max) *ref_max = r;
    return m;
}
