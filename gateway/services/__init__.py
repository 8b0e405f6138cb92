"""What the operator API and the console both do, called by both (routes stay thin: parse,
call a service, answer). Services raise ``ProblemError`` for what a caller did wrong."""
