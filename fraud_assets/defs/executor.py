"""The code location's default executor, for every job that names none of its own: the implicit
asset job behind "Materialize all" and an asset page's "Materialize", and the experimentation and
rollback jobs.

In process, like training_job and inference_job: Dagster's default (multiprocess) starts a process
per step, and each pays the code location's import again (one daily partition: 39.3 s against 10.6 s
in process). Between steps, the IO manager hands freed memory back as the next step loads its inputs
(no job has a hook: with one, Dagster captures every step's outputs)."""

from dagster import Definitions, in_process_executor

defs = Definitions(executor=in_process_executor)
