import CowTraceFormat
import MMUSim

/// One /proc/PID/maps line in the model's terms.
struct MappingSpec {
    enum Kind: Equatable {
        /// Private anonymous memory ("", "[stack]", "[anon:name]").
        case anonymous
        /// The brk heap.
        case heap
        /// Shared anonymous memory (an shmem object), shared by every mapping with the same key.
        case sharedAnonymous(key: String?)
        /// A file; `shmem` for tmpfs-like files (/dev/shm, memfd, SysV shm, /dev/zero).
        case file(key: String, name: String, shmem: Bool)
        /// [vdso], [vvar], [vsyscall] and other special mappings: not modelled.
        case ignored
    }
    var protection: Protection
    var shared: Bool
    var kind: Kind

    init?(_ m: MappingRecord) {
        let p = Array(m.permissions)
        guard p.count >= 4 else { return nil }
        var prot: Protection = []
        if p[0] == "r" { prot.insert(.read) }
        if p[1] == "w" { prot.insert(.write) }
        if p[2] == "x" { prot.insert(.exec) }
        protection = prot
        shared = p[3] == "s"
        let path = m.path
        if path.isEmpty || path.hasPrefix("[anon:") || path == "[stack]" || path.hasPrefix("[stack:") {
            kind = shared ? .sharedAnonymous(key: m.inode == 0 ? nil : "shmem#\(m.inode)") : .anonymous
        } else if path == "[heap]" {
            kind = .heap
        } else if path.hasPrefix("[anon_shmem:") {
            kind = .sharedAnonymous(key: m.inode == 0 ? nil : "shmem#\(m.inode)")
        } else if path.hasPrefix("[") {
            kind = .ignored
        } else {
            let shmem = path.hasPrefix("/dev/shm/") || path.hasPrefix("/memfd:") || path.hasPrefix("/SYSV")
                || path.hasPrefix("/dev/zero")
            kind = .file(key: "\(path)#\(m.inode)", name: path, shmem: shmem)
        }
    }
}

extension TraceReplayer {
    /// A process found running: spawned with its pid, its break set from /proc/PID/stat.
    func replayProcess(_ r: ProcessRecord) {
        snapshotTimes[r.pid] = r.time
        if machine.isAlive(r.pid) {
            processes[r.pid]?.comm = r.comm
            return
        }
        do {
            try machine.spawn(comm: r.comm, pid: r.pid)
        } catch {
            modelError("process could not be created", "pid \(r.pid): \(error)")
            return
        }
        let counters = processes[r.pid]?.counters
        var p = ReplayProcess(pid: r.pid, comm: r.comm, parent: r.ppid > 0 ? r.ppid : nil, origin: .foundRunning)
        p.counters = counters
        processes[r.pid] = p
        var state = PidState()
        if r.startBrk != 0 {
            state.brkKnown = (try? machine.setBreak(r.pid, start: r.startBrk, current: r.brk)) != nil
        }
        pidState[r.pid] = state
    }

    /// One /proc/PID/maps line: a VMA at the same addresses.
    func replayMapping(_ m: MappingRecord) {
        guard ensureProcess(m.pid) else { return }
        pidState[m.pid, default: PidState()].recordedMaps.append(m)
        guard var spec = MappingSpec(m) else {
            note("maps line not understood", "pid \(m.pid) \(hex(m.start))-\(hex(m.end)) \(m.permissions) \(m.path)")
            return
        }
        if spec.kind == .ignored { return }
        // The maps of an exec'd process are read a little after its exec: a
        // private mapping that an mprotect recorded after the exec changed
        // (ld.so's RELRO, made read-only after relocation) was writable
        // before; that recorded mprotect sets the final protection in time.
        if !spec.shared, !spec.protection.contains(.write), let since = snapshotTimes[m.pid],
           mprotects[m.pid]?.contains(where: { $0.time >= since && $0.start < m.end && $0.end > m.start }) == true {
            spec.protection.insert(.write)
            stats.protectionsUndone += 1
        }
        if spec.kind == .heap, pidState[m.pid]?.brkKnown != true {
            if (try? machine.setBreak(m.pid, start: m.start, current: m.end)) != nil {
                pidState[m.pid]!.brkKnown = true
            }
        }
        do {
            try adopt(m.pid, spec, start: m.start, end: m.end, pgoff: Int(m.offset >> 12), heap: spec.kind == .heap)
        } catch {
            modelError("mapping could not be adopted", "pid \(m.pid) \(hex(m.start))-\(hex(m.end)) \(m.path): \(error)")
        }
    }

    func adopt(_ pid: Int32, _ spec: MappingSpec, start: UInt64, end: UInt64, pgoff: Int, heap: Bool) throws {
        guard start < end, end <= Paging.userAddressLimit else {
            throw MMError.invalidArgument("mapping \(hex(start))-\(hex(end)) is not in the user address space")
        }
        var file: FileID? = nil
        switch spec.kind {
        case .anonymous, .heap, .ignored:
            break
        case .sharedAnonymous(let key):
            if let key { file = fileObject(key: key, name: "/dev/zero (deleted)", shmem: true, bytes: end - start) }
        case .file(let key, let name, let shmem):
            file = fileObject(key: key, name: name, shmem: shmem, bytes: UInt64(pgoff) * 4096 + (end - start))
        }
        try machine.adoptMapping(pid, start: start, end: end, protection: spec.protection, shared: spec.shared,
                                 file: file, pgoff: file == nil ? 0 : pgoff, heap: heap && spec.kind == .heap)
    }

    /// The simulated file for a key, created on first use and grown to `bytes`.
    func fileObject(key: String, name: String, shmem: Bool, bytes: UInt64) -> FileID {
        if let id = files[key] {
            try? machine.growFile(id, toAtLeast: bytes)
            return id
        }
        let size = max(bytes, 4096)
        let id = shmem ? machine.createSharedMemory(name, size: size) : machine.createFile(name, size: size)
        files[key] = id
        return id
    }

    /// Present pages of a process found running. Pages whose frame number
    /// appears in several traced processes share one simulated frame; a
    /// non-exclusive anonymous page mapped by only one traced process is shared
    /// with a process outside the trace (it gets an extra, unknown mapper).
    func replayPageRun(_ r: PageRunRecord) {
        guard ensureProcess(r.pid) else { return }
        guard r.flags.contains(.present) else {
            if r.flags.contains(.swapped) { stats.swappedPages += Int(r.count) }
            return
        }
        let since = pidState[r.pid]?.memorySince ?? 0
        let freshAddressSpace = since > 0 && snapshotTimes[r.pid] == since
        for k in 0..<UInt64(r.count) {
            let address = r.address &+ k &* 4096
            guard let vma = machine.vma(r.pid, containing: address) else {
                note("page outside every mapping", "pid \(r.pid) at \(hex(address))")
                continue
            }
            let pfn = r.frame == 0 ? 0 : r.frame &+ k
            // Only frame numbers mapped at least twice ever get a remembered frame.
            let shared = pfn != 0 ? sharedFrameNumbers.slot(pfn) : nil
            var remember = false
            let kind: InstalledPage
            if r.flags.contains(.zeroPage) {
                kind = vma.isShared ? .file : .zeroPage
            } else if r.flags.contains(.fileOrShared) || vma.isShared {
                kind = vma.file != nil ? .file : .anonymous(exclusive: true)
            } else if r.flags.contains(.exclusive) {
                kind = .anonymous(exclusive: true)
            } else if let shared, let f = sharedFrameNumbers.frame(at: shared), machine.frameInfo(frame: f).isAnon,
                      machine.frameInfo(frame: f).refcount > 0 {
                kind = .frame(f)
            } else if shared != nil {
                kind = .anonymous(exclusive: true)
                remember = true
            } else if freshAddressSpace {
                // An exec'd address space shares anonymous pages only with
                // children it forked since: the snapshot, read after the
                // exec, saw such a fork. At the exec's time the page was the
                // process's own; the recorded fork shares it.
                kind = .anonymous(exclusive: true)
                stats.snapshotPagesShared += 1
            } else {
                kind = .anonymous(exclusive: false)
            }
            do {
                let f = try machine.installPage(r.pid, at: address, kind)
                if remember, let shared { sharedFrameNumbers.setFrame(f, at: shared) }
                stats.installedPages += 1
                snapshotPages.insert(pid: r.pid, page: address)
            } catch {
                modelError("page could not be installed", "pid \(r.pid) at \(hex(address)): \(error)")
            }
        }
    }

    func replayFork(_ f: ForkEventRecord) {
        guard f.child != f.parent else { return } // a thread
        guard ensureProcess(f.parent) else { return }
        forkedSinceExec.insert(f.parent)
        if machine.isAlive(f.child) {
            note("pid reused without a recorded exit", "pid \(f.child) forked by \(f.parent)")
            try? machine.exit(f.child)
        }
        do {
            try machine.fork(f.parent, childPid: f.child, comm: f.comm)
        } catch {
            modelError("fork refused by the model (child adopted empty)", "pid \(f.parent) → \(f.child): \(error)")
            guard (try? machine.spawn(comm: f.comm, pid: f.child)) != nil else { return }
        }
        var p = processes[f.child] ?? ReplayProcess(pid: f.child, comm: f.comm, origin: .forked)
        p.comm = f.comm
        p.parent = f.parent
        p.origin = .forked
        p.exited = false
        processes[f.child] = p
        pidState[f.child] = pidState[f.parent] ?? PidState()
        forkTimes[f.child] = f.time
        childrenOf[f.parent, default: []].append(f.child)
    }

    func replayExec(_ e: ExecEventRecord) {
        if machine.isAlive(e.pid) {
            do { try machine.exec(e.pid, comm: e.comm) } catch {
                modelError("exec refused by the model", "pid \(e.pid): \(error)")
            }
        } else {
            guard ensureProcess(e.pid, comm: e.comm) else { return }
        }
        processes[e.pid, default: ReplayProcess(pid: e.pid, comm: e.comm, origin: .adopted)].comm = e.comm
        processes[e.pid]!.execs += 1
        var fresh = PidState()
        fresh.memorySince = e.time
        forkedSinceExec.remove(e.pid)
        pidState[e.pid] = fresh
    }

    func replayExit(_ x: ExitEventRecord) {
        if machine.isAlive(x.pid) {
            rememberExitingSharer(x.pid, x.time)
            try? machine.exit(x.pid)
        }
        if processes[x.pid] != nil {
            processes[x.pid]!.exited = true
            processes[x.pid]!.exitCode = x.exitCode
        }
        pidState[x.pid] = nil
    }
}
