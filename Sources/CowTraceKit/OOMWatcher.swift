import Foundation

/// An `OOMTracer` plus, optionally, the main tracer on every process, so each
/// kill comes with the victim's ancestry and copies. `cowtrace oom` and
/// `cowtrace stat --oom` use it.
public final class OOMWatcher {
    public let oom: OOMTracer
    /// nil when lineage was not asked for (if the main tracer cannot attach, init throws).
    public let lineage: CowTracer?
    public private(set) var reports: [OOMReport] = []
    private var handler: ((OOMReport) -> Void)?

    /// `lineage`: also run the main tracer on every process (its cost: the
    /// fault hooks on every process).
    public init(options: TracerOptions, lineage: Bool, existingTracer: CowTracer? = nil) throws {
        oom = try OOMTracer(options: options)
        if let existingTracer {
            self.lineage = existingTracer
        } else if lineage {
            var all = options
            all.selection = TraceSelection()
            all.selection.all = true
            self.lineage = try CowTracer(options: all)
        } else {
            self.lineage = nil
        }
        oom.onKill { [weak self] kill in self?.handle(kill) }
    }

    public func onReport(_ handler: @escaping (OOMReport) -> Void) { self.handler = handler }

    @discardableResult
    public func poll(timeoutMilliseconds: Int32) -> Int { oom.poll(timeoutMilliseconds: timeoutMilliseconds) }

    public func close() { oom.close() }

    private func handle(_ kill: OOMKill) {
        let snapshot = try? lineage?.snapshot()
        let ancestry = OOMAncestry.build(victim: kill.pid, comm: kill.comm, snapshot: snapshot,
                                         pageSize: lineage?.pageSize ?? 4096)
        let report = OOMReport(kill: kill, ancestry: ancestry)
        reports.append(report)
        handler?(report)
    }
}
