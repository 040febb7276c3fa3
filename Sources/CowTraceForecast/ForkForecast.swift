import MMUSim

/// "If this process forked now and the child wrote every page": the peak
/// its domain would reach, whether the OOM killer would act, and whom it
/// would choose, from the real process's figures run through the simulated
/// MMU (its fork, its copy-on-write faults, its memory cgroup charge and
/// its oom_badness / select_bad_process, as mm/oom_kill.c has them).
public struct ForkForecast: Sendable, Equatable {
    public var target: ProcessMemory
    public var domain: MemoryDomain
    /// Bytes the child would copy: the target's private writable anonymous pages.
    public var copyableBytes: UInt64
    /// What the domain would be charged with every page copied: usage + copyable.
    public var peakBytes: UInt64
    /// Overcommit mode 2 refuses the fork itself (ENOMEM): the private
    /// writable size does not fit in CommitLimit − Committed_AS.
    public var forkRefused: Bool
    /// Copies exceed the headroom: the OOM killer acts if the child goes on writing.
    public var atRisk: Bool
    /// Bytes the child copies before the simulated OOM kill (nil: none happens).
    public var copiedBeforeOOMBytes: UInt64?
    /// The process the simulated OOM killer chose; `victimIsChild` when it is the fork's child.
    public var victim: Victim?
    public var victimIsChild: Bool
    /// The processes the model ran (the target and the largest others of the domain).
    public var modelledProcesses: Int

    public struct Victim: Sendable, Equatable {
        public var pid: Int32
        public var comm: String
        public var points: Int
        public var oomScoreAdj: Int
    }

    /// How many of the domain's other processes, the largest by badness,
    /// the model runs; the rest of the domain's usage is one unkillable filler.
    public static let defaultModelledOthers = 15

    public static func run(target: ProcessMemory, domain: MemoryDomain, others: [ProcessMemory],
                           modelledOthers: Int = defaultModelledOthers) throws -> ForkForecast {
        let page: UInt64 = 4096
        func pages(_ bytes: UInt64) -> UInt64 { (bytes + page - 1) / page }
        let chosen = Array(others.filter { $0.pid != target.pid && $0.oomScoreAdj > -1000 }
            .sorted { ($0.badnessBytes, $1.pid) > ($1.badnessBytes, $0.pid) }.prefix(modelledOthers))
        let copyable = pages(target.copyableBytes) * page
        let rss = { (p: ProcessMemory) in pages(p.anonBytes + p.fileBytes + p.shmemBytes) * page }
        let modelled = ([target] + chosen).reduce(UInt64(0)) { $0 + rss($1) }
        let filler = domain.usageBytes > modelled ? domain.usageBytes - modelled : 0

        // The model's RAM: the host's for the host; for a cgroup, room for
        // the whole copy above its limit, so that only the cgroup's limit bites.
        let cgroupName = domain.cgroup.map { _ in "domain" }
        let ram = cgroupName == nil ? domain.limitBytes : domain.limitBytes + domain.usageBytes + 2 * copyable + (64 << 20)
        let machine = Machine(MachineConfiguration(ramBytes: ram, swapBytes: domain.swapFreeBytes, overcommitMode: .always))
        if let cgroupName { try machine.createCgroup(cgroupName, limitBytes: domain.limitBytes + domain.swapFreeBytes) }

        func fill(_ pid: Int32, bytes: UInt64) throws -> UInt64? {
            guard bytes > 0 else { return nil }
            let start = try machine.mmap(pid, length: bytes, protection: [.read, .write], flags: [.private, .anonymous])
            try machine.write(pid, start, length: bytes)
            return start
        }
        // File and shmem rss as a read-only file mapping, read: the pages count
        // in rss (and so in badness), but a fork does not copy their PTEs
        // (vma_needs_copy: no anon_vma), so the child starts without them.
        func mapFile(_ pid: Int32, bytes: UInt64) throws {
            guard bytes > 0 else { return }
            let file = machine.createFile("rss-\(pid)", size: bytes)
            let start = try machine.mmap(pid, length: bytes, protection: [.read], flags: [.private], file: file)
            try machine.read(pid, start, length: bytes)
        }
        if filler > 0 {
            let pid = try machine.spawn(comm: "(rest of \(domain.name))", pid: 0x7fff_0000, oomScoreAdj: -1000, cgroup: cgroupName)
            _ = try fill(pid, bytes: filler)
        }
        for p in chosen {
            let pid = try machine.spawn(comm: p.comm, pid: p.pid, uid: p.uid, oomScoreAdj: p.oomScoreAdj, cgroup: cgroupName)
            _ = try fill(pid, bytes: pages(p.anonBytes) * page)
            try mapFile(pid, bytes: pages(p.fileBytes + p.shmemBytes) * page)
        }
        let tpid = try machine.spawn(comm: target.comm, pid: target.pid, uid: target.uid, oomScoreAdj: target.oomScoreAdj, cgroup: cgroupName)
        // The copyable part first, then the rest of its anonymous rss, then its file and shmem rss.
        let region = try fill(tpid, bytes: copyable)
        let anon = pages(target.anonBytes) * page
        _ = try fill(tpid, bytes: anon > copyable ? anon - copyable : 0)
        try mapFile(tpid, bytes: pages(target.fileBytes + target.shmemBytes) * page)

        let commitNeeded = Int64(target.privateWritableVMBytes)
        let refused = domain.overcommitMode == 2 && commitNeeded > domain.commitHeadroomBytes
        var result = ForkForecast(target: target, domain: domain, copyableBytes: copyable,
                                  peakBytes: domain.usageBytes + copyable, forkRefused: refused,
                                  atRisk: !refused && copyable > domain.headroomBytes,
                                  copiedBeforeOOMBytes: nil, victim: nil, victimIsChild: false,
                                  modelledProcesses: chosen.count + 1)
        guard !refused, let region else { return result }

        let child = try machine.fork(tpid)
        let chunk: UInt64 = 256 * page
        var written: UInt64 = 0
        let eventsBefore = machine.oomEvents.count
        while written < copyable {
            let n = min(chunk, copyable - written)
            let r = try machine.write(child, region + written, length: n)
            written += n
            if machine.oomEvents.count > eventsBefore || !r.completed {
                let event = machine.oomEvents.dropFirst(eventsBefore).first
                result.copiedBeforeOOMBytes = written
                if let v = event?.victim {
                    result.victim = Victim(pid: v.pid, comm: v.comm, points: v.points, oomScoreAdj: v.oomScoreAdj)
                    result.victimIsChild = v.pid == child
                }
                break
            }
        }
        return result
    }
}
