"""Worker processes: which task queues, their activities' HTTP clients, tuning and
graceful shutdown. With ordersaga/, the only place that builds clients."""
