"""Request-level fleet simulation: continuous batching per engine, routing, cold starts, spot preemption
with a two-minute warning and drain strategies, priority classes, and scaling policies in the loop."""
