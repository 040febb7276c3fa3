// CowTraceReplay: replays a cowtrace recording through the simulated MMU (MMUSim) and compares its classes with the kernel's.
