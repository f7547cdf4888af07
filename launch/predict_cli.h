/*
 * launch/predict_cli.h — what `loom predict` and `loom plan --predict`
 * share (launch/cmd_predict.c).
 */
#ifndef LOOM_PREDICT_CLI_H
#define LOOM_PREDICT_CLI_H

#include "parallel/plan.h"
#include "parallel/predict.h"

/* A GGUF file's planner view, or a model description when path ends in .json. */
loom_status loom_predict_open_model(const char *path, loom_plan_model *m) LOOM_MUST_USE;
/* "node<k>" for each world rank (ranks fill nodes in order), so the planner
 * keeps TP groups on one node; free with loom_predict_hosts_free. */
loom_status loom_predict_hosts(const loom_predict_cluster *c, int world, char ***names) LOOM_MUST_USE;
void loom_predict_hosts_free(char **names, int world);

#endif
