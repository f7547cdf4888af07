/* keeps the support library non-empty */
typedef int loom_test_support_empty;
