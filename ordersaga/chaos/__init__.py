"""`ordersaga chaos`: the fault matrix against the components as separate processes.

stack.py starts them (devstack's argv, probes and env, without its supervisor, so
one child can be killed and restarted alone); shop.py is the clients' side (orders,
cancels, reads, every answer recorded); experiments.py injects the faults;
checks.py holds the invariants asserted after each; report.py prints the tables.
"""
