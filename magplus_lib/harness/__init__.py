"""The study's harness: profiles and settings, the notebook runner, the restore-or-retrain cache,
atomic writes, locks, checkpoint loading and the command line's helpers."""
