import CBPF

/// The maps and user-run programs of bpf/cowtrace.bpf.c that user space
/// touches, found and size-checked once, right after the object is opened:
/// sized before load, read after it.
struct CowTraceMaps {
    let processSlots: BPFMap<UInt32, cowtrace_process_slot>
    let pidSlots: BPFMap<UInt32, cowtrace_pid_slot_pair>
    let threadSlots: BPFMap<UInt32, cowtrace_process_slot>
    let tidSlots: BPFMap<UInt32, cowtrace_pid_slot_pair>
    /// The hashed index (large kernel.pid_max): tgid (tid) -> slot.
    let pidIndex: BPFMap<UInt32, UInt32>
    let tidIndex: BPFMap<UInt32, UInt32>
    let exitedThreads: BPFMap<UInt32, cowtrace_process_slot>
    let exitedCounters: BPFMap<UInt32, cowtrace_pid_counters>
    let forkRecords: BPFMap<UInt32, cowtrace_fork_record>
    /// Threads inside a fork-family syscall (lineage only): sized, never read.
    let forkStart: BPFMap<UInt32, ForkInProgress>
    let pidInfo: BPFMap<UInt32, cowtrace_pid_info>
    /// Per CPU, by enum cowtrace_drop_reason.
    let drops: BPFMap<UInt32, UInt64>
    let histograms: BPFMap<cowtrace_hist_key, cowtrace_hist>
    /// Stack id -> up to `stackDepth` return addresses.
    let stacks: BPFMap<UInt32, UInt64>
    let stackCopies: BPFMap<cowtrace_stack_key, UInt64>
    /// One ring buffer per CPU.
    let events: BPFPerCPURingBuffers
    /// Recording: each CPU's batch of fault events not sent yet.
    let eventBatches: BPFMap<UInt32, cowtrace_event_batch>
    let registerProcess: BPFProgram
    let unregisterProcess: BPFProgram

    static let stackDepth = 127

    init(_ object: BPFObject) throws {
        processSlots = try object.map("process_slots", key: UInt32.self, value: cowtrace_process_slot.self)
        pidSlots = try object.map("pid_slots", key: UInt32.self, value: cowtrace_pid_slot_pair.self)
        threadSlots = try object.map("thread_slots", key: UInt32.self, value: cowtrace_process_slot.self)
        tidSlots = try object.map("tid_slots", key: UInt32.self, value: cowtrace_pid_slot_pair.self)
        pidIndex = try object.map("pid_index", key: UInt32.self, value: UInt32.self)
        tidIndex = try object.map("tid_index", key: UInt32.self, value: UInt32.self)
        exitedThreads = try object.map("exited_threads", key: UInt32.self, value: cowtrace_process_slot.self)
        exitedCounters = try object.map("exited_counters", key: UInt32.self, value: cowtrace_pid_counters.self)
        forkRecords = try object.map("fork_records", key: UInt32.self, value: cowtrace_fork_record.self)
        forkStart = try object.map("fork_start", key: UInt32.self, value: ForkInProgress.self)
        pidInfo = try object.map("pid_info", key: UInt32.self, value: cowtrace_pid_info.self)
        drops = try object.map("drops", key: UInt32.self, value: UInt64.self)
        histograms = try object.map("histograms", key: cowtrace_hist_key.self, value: cowtrace_hist.self)
        stacks = try object.map("stacks", key: UInt32.self, value: UInt64.self, valueElements: CowTraceMaps.stackDepth)
        stackCopies = try object.map("stack_copies", key: cowtrace_stack_key.self, value: UInt64.self)
        events = try BPFPerCPURingBuffers(object, "events")
        eventBatches = try object.map("event_batches", key: UInt32.self, value: cowtrace_event_batch.self)
        registerProcess = try object.program(CowTracer.registerProgram)
        unregisterProcess = try object.program(CowTracer.unregisterProgram)
    }
}

/// bpf/cowtrace_lineage.bpf.h's struct fork_in_progress (private to the BPF
/// side): only its size is checked, when fork_start is opened.
struct ForkInProgress {
    var startNanoseconds: UInt64
    var child: UInt32
    var pad: UInt32
}
