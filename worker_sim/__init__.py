"""A simulated render worker, and the demo that runs a few of them.

`rendertrack simulate-worker` behaves like a render node without After Effects: it claims jobs,
reports progress in steps with renderer-like log lines, heartbeats through long frames, completes
or fails them, and hands its job back when stopped. It speaks GraphQL (`claimJob`,
`reportProgress`, ...) or Nexrender's REST API (`/api/v1/jobs/pickup`, `PUT /api/v1/jobs/:uid`).

It is a client only: it talks HTTP (httpx) and imports nothing of the server, so it runs on any
machine that can reach one. `python -m worker_sim.demo` (`make demo`) starts a server on a demo
database, three simulated workers and a few sample jobs.

- `options`: the command line (argparse), cheap to import;
- `render`: what a simulated render does (frames, steps, log lines, failures), no I/O;
- `protocols`: the two wire protocols behind one interface;
- `worker`: the worker loop (slots, polling, back-off, signals);
- `demo`: the orchestration behind `make demo`.
"""
