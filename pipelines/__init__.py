"""The lifecycle stages as Ray programs, and the orchestration that chains them (`bespoke run`)."""
