"""Evaluation and the paper's artefacts: MMR and recognition metrics, the micro-expression
evaluator, the alpha sweep, clip generation, intervals, tables and figures."""
