import MMUSim
/// Runs a scenario step by step on a fresh Machine.
public struct ScenarioRunner {
    public let scenario: Scenario
    public private(set) var machine: Machine
    /// Process names to pids, and each process's named regions (start, length).
    public private(set) var pids: [String: Int32] = [:]
    var names: [String] = []
    var regions: [String: [String: (start: UInt64, length: UInt64)]] = [:]
    var report: ScenarioReport
    /// smaps of each process after the last step that could change them (a walk of every PTE).
    var smapsCache: [Int32: SmapsRollup] = [:]

    public init(_ scenario: Scenario) throws {
        self.scenario = scenario
        machine = Machine(scenario.machine)
        report = ScenarioReport(name: scenario.name, summary: scenario.summary,
                                machine: ScenarioRunner.describe(scenario.machine), host: .init(
                                    ramKB: 0, usedKB: 0, swapUsedKB: 0, pageCacheKB: 0, committedASKB: 0, commitLimitKB: 0, oomKills: 0))
        for c in scenario.cgroups { try machine.createCgroup(c.name, limitBytes: c.limitBytes) }
        for f in scenario.files { machine.createFile(f.name, size: f.sizeBytes) }
    }

    /// Runs every step; `onStep` sees each step's report as soon as it is done.
    public static func run(_ scenario: Scenario, onStep: (ScenarioReport.StepReport) -> Void = { _ in }) throws -> ScenarioReport {
        var runner = try ScenarioRunner(scenario)
        for (i, step) in scenario.steps.enumerated() {
            onStep(runner.perform(step, index: i + 1))
        }
        return runner.finish()
    }

    static func describe(_ c: MachineConfiguration) -> String {
        let mode = ["0 (heuristic)", "1 (always)", "2 (never)"][c.overcommitMode.rawValue]
        var s = "\(formatBytes(c.ramBytes)) RAM, " + (c.swapBytes == 0 ? "no swap" : "\(formatBytes(c.swapBytes)) swap")
        s += ", overcommit_memory \(mode)"
        if c.overcommitMode == .never {
            s += c.overcommitKBytes != 0 ? ", overcommit_kbytes \(c.overcommitKBytes)" : ", overcommit_ratio \(c.overcommitRatio)"
        }
        s += ", THP \(c.transparentHugePages.rawValue)"
        return s
    }

    struct StepFailure: Error {
        var message: String
        /// What the step was doing, when known before it failed.
        var action: String? = nil
    }

    func pid(_ name: String) throws -> Int32 {
        guard let pid = pids[name] else { throw StepFailure(message: "no process named '\(name)'") }
        guard machine.isAlive(pid) else {
            throw StepFailure(message: "\(name) (pid \(pid)) is \(machine.wasKilledByOOM(pid) ? "killed by the OOM killer" : "gone")")
        }
        return pid
    }

    func region(_ process: String, _ name: String) throws -> (start: UInt64, length: UInt64) {
        guard let r = regions[process]?[name] else { throw StepFailure(message: "\(process) has no region named '\(name)'") }
        return r
    }

    /// Performs one step and reports the state after it.
    public mutating func perform(_ step: Scenario.Step, index: Int) -> ScenarioReport.StepReport {
        let faultsBefore = names.compactMap { pids[$0] }.map { machine.faults($0) }
        let oomBefore = machine.oomEvents.count
        var description = ""
        var failure: String?
        var stepFaults = FaultCounts()
        do {
            description = try apply(step.action, &stepFaults)
        } catch let stepFailure as StepFailure {
            failure = stepFailure.message
            description = stepFailure.action ?? ""
        } catch let other {
            failure = "\(other)"
        }
        if description.isEmpty { description = ScenarioRunner.summarize(step.action) }
        // Faults counted per process already include this step's; show the step's own.
        var faults: [String: Int] = [:]
        let after = names.compactMap { pids[$0] }.map { machine.faults($0) }
        for (i, counts) in after.enumerated() {
            let before = i < faultsBefore.count ? faultsBefore[i] : FaultCounts()
            for c in FaultClass.allCases where counts[c] - before[c] > 0 {
                faults[c.description, default: 0] += counts[c] - before[c]
            }
        }
        let newOOM = machine.oomEvents[oomBefore...].map(\.dmesg)
        report.oomEvents += newOOM
        switch step.action {
        case .access(_, _, .read, _) where faults.isEmpty: break
        case .oomScoreAdj, .spawn: break
        default: smapsCache = [:]
        }
        let row = ScenarioReport.StepReport(index: index, line: step.line, action: description, note: step.note,
                                            faults: faults, error: failure, oomEvents: Array(newOOM),
                                            processes: processRows(), host: hostRow())
        report.steps.append(row)
        return row
    }

    mutating func apply(_ action: Scenario.Action, _ faults: inout FaultCounts) throws -> String {
        switch action {
        case let .spawn(process, pid, adj, cgroup, uid, cap):
            guard pids[process] == nil || !machine.isAlive(pids[process]!) else {
                throw StepFailure(message: "a process named '\(process)' already exists")
            }
            let p = try machine.spawn(comm: process, pid: pid, uid: uid, oomScoreAdj: adj, cgroup: cgroup, capSysAdmin: cap)
            register(process, p)
            regions[process] = [:]
            return "spawn \(process) (pid \(p))"
        case let .mmap(process, name, size, prot, shared, fileName, offset, noReserve, advice):
            let p = try pid(process)
            var flags: MapFlags = shared ? .shared : .private
            var file: FileID?
            if let fileName {
                guard let f = machine.file(named: fileName) else {
                    throw StepFailure(message: "no file named '\(fileName)'; declare it under files:")
                }
                file = f
            } else {
                flags.insert(.anonymous)
            }
            if noReserve { flags.insert(.noReserve) }
            let start = try machine.mmap(p, length: size, protection: prot, flags: flags, file: file, offset: offset)
            regions[process, default: [:]][name] = (start, Paging.pageAlignUp(size))
            for a in advice { try machine.madvise(p, start, length: size, a) }
            return "\(process): mmap \(name) \(formatBytes(size)) \(shared ? "shared" : "private") \(fileName ?? "anonymous") at \(hex(start))"
        case let .munmap(process, name):
            let p = try pid(process)
            let r = try region(process, name)
            try machine.munmap(p, r.start, length: r.length)
            regions[process]?[name] = nil
            return "\(process): munmap \(name)"
        case let .mprotect(process, name, prot):
            let p = try pid(process)
            let r = try region(process, name)
            try machine.mprotect(p, r.start, length: r.length, protection: prot)
            return "\(process): mprotect \(name)"
        case let .madvise(process, name, advice):
            let p = try pid(process)
            let r = try region(process, name)
            try machine.madvise(p, r.start, length: r.length, advice)
            return "\(process): madvise \(name) \(advice.rawValue)"
        case let .brk(process, name, size):
            let p = try pid(process)
            let base = try machine.currentBreak(p)
            let start = regions[process]?[name]?.start ?? base
            try machine.brk(p, start + size)
            regions[process, default: [:]][name] = (start, Paging.pageAlignUp(size))
            return "\(process): brk \(name) to \(formatBytes(size))"
        case let .access(process, name, kind, span):
            let p = try pid(process)
            let r = try region(process, name)
            let (pages, result) = try touch(p, r, span) { try machine.access(p, $0, length: $1, kind, every: span.every) }
            faults += result.faults
            let description = "\(process): \(kind.rawValue) \(pages) pages of \(name)\(span.every > 1 ? " (every \(span.every)th)" : "")"
            do {
                try check(result)
            } catch var failure as StepFailure {
                failure.action = description
                throw failure
            }
            return description
        case let .pin(process, name, span):
            let p = try pid(process)
            let r = try region(process, name)
            guard span.every == 1 else { throw StepFailure(message: "pin takes no 'every'") }
            let (pages, _) = try touch(p, r, span) { try machine.pin(p, $0, length: $1); return AccessResult() }
            return "\(process): pin \(pages) pages of \(name)"
        case let .store(process, name, offset, value):
            let p = try pid(process)
            let r = try region(process, name)
            try machine.store(p, r.start + offset.resolve(in: r.length), value)
            return "\(process): \(name) = \(value)"
        case let .increment(process, name, offset):
            let p = try pid(process)
            let r = try region(process, name)
            let v = try machine.increment(p, r.start + offset.resolve(in: r.length))
            return "\(process): \(name)++ -> \(v)"
        case let .fork(parent, child, childPid):
            let p = try pid(parent)
            guard pids[child] == nil || !machine.isAlive(pids[child]!) else {
                throw StepFailure(message: "a process named '\(child)' already exists")
            }
            let c = try machine.fork(p, childPid: childPid, comm: nil)
            register(child, c)
            regions[child] = regions[parent]
            return "\(parent): fork -> \(child) (pid \(c))"
        case let .exec(process, comm):
            let p = try pid(process)
            try machine.exec(p, comm: comm)
            regions[process] = [:]
            return "\(process): exec \(comm)"
        case let .exit(process):
            try machine.exit(try pid(process))
            return "\(process): exit"
        case let .oomScoreAdj(process, value):
            try machine.setOOMScoreAdj(try pid(process), value)
            return "\(process): oom_score_adj = \(value)"
        case .ksm:
            let merged = machine.runKSM()
            return "ksmd pass: \(merged) pages now share KSM pages"
        }
    }

    mutating func register(_ name: String, _ pid: Int32) {
        pids[name] = pid
        if !names.contains(name) { names.append(name) }
    }

    /// Touches a span of a region: one run, or every n-th page.
    func touch(_ pid: Int32, _ r: (start: UInt64, length: UInt64), _ span: Scenario.Span,
               _ body: (UInt64, UInt64) throws -> AccessResult) throws -> (Int, AccessResult) {
        let offset = Paging.pageAlignDown(span.offset.resolve(in: r.length))
        let length = span.length.resolve(in: r.length)
        guard offset + length <= r.length else {
            throw StepFailure(message: "offset + length (\(formatBytes(offset + length))) is past the end of the region (\(formatBytes(r.length)))")
        }
        let pages = Int(Paging.pageAlignUp(length) >> 12)
        return ((pages + span.every - 1) / span.every, try body(r.start + offset, length))
    }

    func check(_ result: AccessResult) throws {
        if let a = result.segvAddress { throw StepFailure(message: "SIGSEGV at \(hex(a))") }
        if let a = result.sigbusAddress { throw StepFailure(message: "SIGBUS at \(hex(a))") }
        if result.outOfMemory { throw StepFailure(message: "out of memory: the process was killed or no memory was left") }
    }

    static func summarize(_ action: Scenario.Action) -> String {
        switch action {
        case .spawn(let p, _, _, _, _, _): return "spawn \(p)"
        case .mmap(let p, let r, let size, _, _, _, _, _, _): return "\(p): mmap \(r) \(formatBytes(size))"
        case .munmap(let p, let r): return "\(p): munmap \(r)"
        case .mprotect(let p, let r, _): return "\(p): mprotect \(r)"
        case .madvise(let p, let r, let a): return "\(p): madvise \(r) \(a.rawValue)"
        case .brk(let p, let r, let size): return "\(p): brk \(r) to \(formatBytes(size))"
        case .access(let p, let r, let kind, _): return "\(p): \(kind.rawValue) \(r)"
        case .pin(let p, let r, _): return "\(p): pin \(r)"
        case .store(let p, let r, _, let v): return "\(p): \(r) = \(v)"
        case .increment(let p, let r, _): return "\(p): \(r)++"
        case .fork(let p, let c, _): return "\(p): fork -> \(c)"
        case .exec(let p, let comm): return "\(p): exec \(comm)"
        case .exit(let p): return "\(p): exit"
        case .oomScoreAdj(let p, let v): return "\(p): oom_score_adj = \(v)"
        case .ksm: return "ksmd pass"
        }
    }

    mutating func processRows() -> [ScenarioReport.ProcessRow] {
        names.compactMap { name -> ScenarioReport.ProcessRow? in
            guard let pid = pids[name] else { return nil }
            let rss = machine.rss(pid)
            let s = smapsCache[pid] ?? machine.smaps(pid)
            smapsCache[pid] = s
            let alive = machine.isAlive(pid)
            return ScenarioReport.ProcessRow(
                name: name, pid: pid, comm: machine.comm(pid) ?? name,
                state: alive ? "running" : (machine.wasKilledByOOM(pid) ? "killed (OOM)" : "exited"),
                rssKB: kb(rss.total), anonKB: kb(rss.anon), fileKB: kb(rss.file), shmemKB: kb(rss.shmem),
                pssKB: s.pss >> 10, privateKB: (s.privateClean + s.privateDirty) >> 10,
                sharedKB: (s.sharedClean + s.sharedDirty) >> 10, privateDirtyKB: s.privateDirty >> 10,
                copies: machine.faults(pid).copies, faults: machine.faults(pid).total,
                oomScore: alive ? machine.oomScore(pid) : 0, oomScoreAdj: machine.oomScoreAdj(pid) ?? 0)
        }
    }

    func hostRow() -> ScenarioReport.HostRow {
        let m = machine.meminfo()
        return ScenarioReport.HostRow(ramKB: kb(m.memTotal), usedKB: kb(m.used), swapUsedKB: kb(m.swapUsed),
                                      pageCacheKB: kb(m.cached), committedASKB: kb(m.committedAS),
                                      commitLimitKB: kb(m.commitLimit), oomKills: machine.vmstat.oomKill)
    }

    /// Final rows and the expectations' verdicts.
    public mutating func finish() -> ScenarioReport {
        report.processes = processRows()
        report.host = hostRow()
        report.expectations = scenario.expectations.map(evaluate)
        return report
    }

    func evaluate(_ e: Scenario.Expectation) -> ScenarioReport.ExpectationResult {
        func state(_ name: String) -> String {
            guard let pid = pids[name] else { return "never existed" }
            return machine.isAlive(pid) ? "alive" : (machine.wasKilledByOOM(pid) ? "killed" : "exited")
        }
        switch e {
        case .killed(let name):
            let s = state(name)
            return .init(check: "\(name) is killed by the OOM killer", actual: s, passed: s == "killed")
        case .alive(let name):
            let s = state(name)
            return .init(check: "\(name) is alive", actual: s, passed: s == "alive")
        case let .copies(name, n):
            let actual = pids[name].map { machine.faults($0).copies }
            return .init(check: "\(name) made \(n) \(n == 1 ? "copy" : "copies")", actual: actual.map(String.init) ?? "never existed", passed: actual == n)
        case .oomKills(let n):
            let k = machine.vmstat.oomKill
            return .init(check: "\(n) OOM kill\(n == 1 ? "" : "s")", actual: "\(k)", passed: k == n)
        case .failedSteps(let n):
            let f = report.failedSteps
            return .init(check: "\(n) failed step\(n == 1 ? "" : "s")", actual: "\(f)", passed: f == n)
        case let .value(name, region, offset, n):
            var actual = "unreadable"
            if let pid = pids[name], machine.isAlive(pid), let r = regions[name]?[region],
               let info = machine.frameInfo(pid, r.start + offset.resolve(in: r.length)) {
                actual = "\(info.contents)"
            } else if let pid = pids[name], machine.isAlive(pid), regions[name]?[region] != nil {
                actual = "0" // never touched: reads as zero
            }
            return .init(check: "\(name): \(region) = \(n)", actual: actual, passed: actual == "\(n)")
        }
    }
}

/// "512 MiB", "10 GiB", "4 KiB", "123 B".
public func formatBytes(_ bytes: UInt64) -> String {
    let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for (size, name) in units where bytes >= size {
        if bytes % size == 0 { return "\(bytes / size) \(name)" }
        // Two decimals, so that 1 GiB less 40 KiB does not print as 1024.0 MiB.
        let hundredths = (bytes * 100 + size / 2) / size
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction) \(name)"
    }
    return "\(bytes) B"
}

func formatKB(_ kb: Int) -> String { formatBytes(UInt64(max(kb, 0)) * 1024) }
