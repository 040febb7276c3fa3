import CowTraceFormat
import Foundation

/// The forks of a trace as a tree (parent → children), with what each fork
/// cost: the parent's time in the syscall, the pages it had mapped, and the
/// copies attributed to the fork until the child exec'd or exited.
public struct ForkLineage: Sendable {
    public struct Node: Sendable {
        public let record: ForkRecord
        public let parentComm: String
        public let childComm: String
        /// The child's copies now (for a child still running).
        public let childCopiesNow: UInt64
        public let parentCopiesDuring: UInt64?
        /// How the child ended, once it exited.
        public let childExit: ExitStatus?
        public var children: [Node]

        /// The child's copies attributed to the fork: up to its exec, or all of them.
        public var childCopies: UInt64 { record.childCopiesAtEnd ?? childCopiesNow }
        /// A fork followed by exec: what the child copied first was pure waste.
        public var isForkExec: Bool { record.endedBy == .exec }
    }

    public let roots: [Node]
    public let pageSize: UInt64

    public init(records: [ForkRecord], snapshot: TraceSnapshot, pageSize: UInt64) {
        self.pageSize = pageSize
        let byParent = Dictionary(grouping: records, by: \.parent)
        let children = Set(records.map(\.child))
        func comm(_ pid: Int32) -> String { snapshot.info[pid]?.comm.nonEmpty ?? ProcFS.comm(of: pid) ?? "?" }
        func copies(_ pid: Int32) -> UInt64 {
            snapshot.counters[pid]?.pagesCopied ?? 0
        }
        func exitStatus(_ pid: Int32) -> ExitStatus? {
            snapshot.info[pid].flatMap { $0.exited ? ExitStatus(raw: $0.exitCode) : nil }
        }
        func build(_ r: ForkRecord, depth: Int) -> Node {
            let grandchildren = depth < 64 ? (byParent[r.child] ?? []).map { build($0, depth: depth + 1) } : []
            return Node(record: r, parentComm: comm(r.parent), childComm: comm(r.child),
                        childCopiesNow: copies(r.child),
                        parentCopiesDuring: r.parentCopiesDuring(parentCopiesNow: copies(r.parent)),
                        childExit: exitStatus(r.child), children: grandchildren)
        }
        roots = records.filter { !children.contains($0.parent) }.map { build($0, depth: 0) }
    }

    public var allNodes: [Node] {
        var out: [Node] = []
        func walk(_ n: Node) { out.append(n); n.children.forEach(walk) }
        roots.forEach(walk)
        return out
    }

    public func renderText() -> String {
        if roots.isEmpty { return "no forks seen\n" }
        var out = ""
        let mib = { (pages: UInt64) in String(format: "%.1f MiB", Double(pages &* pageSize) / 1_048_576) }
        func line(_ n: Node, indent: String) {
            let r = n.record
            let latency = r.latencyNanoseconds.map { String(format: "%.3f ms", Double($0) / 1e6) } ?? "?"
            var text = "\(indent)\(r.parent) (\(n.parentComm)) → \(r.child) (\(n.childComm))  fork \(latency), \(mib(r.totalVMPages)) mapped"
            switch r.endedBy {
            case .exec:
                text += "; exec'd after copying \(n.childCopies) pages (\(mib(n.childCopies)))"
                if n.childCopies > 0 { text += " — wasted by fork+exec" }
            case .exit:
                text += "; the child copied \(n.childCopies) pages (\(mib(n.childCopies))) and "
                    + (n.childExit.map { ($0.signal != nil ? "was " : "") + $0.description } ?? "exited")
            case nil:
                text += "; running, copied \(n.childCopies) pages (\(mib(n.childCopies))) so far"
            }
            if let during = n.parentCopiesDuring {
                text += "; the parent copied \(during) pages (\(mib(during))) meanwhile"
            }
            out += text + "\n"
            for c in n.children { line(c, indent: indent + "    ") }
        }
        roots.forEach { line($0, indent: "") }
        let forkExec = allNodes.filter(\.isForkExec)
        let waste = forkExec.reduce(UInt64(0)) { $0 + $1.childCopies }
        out += "\(allNodes.count) forks, \(forkExec.count) followed by exec"
        out += forkExec.isEmpty ? "\n" : " (\(waste) pages, \(mib(waste)), copied before exec)\n"
        return out
    }

    public func renderJSON() -> String {
        let nodes = allNodes.map { n -> String in
            let r = n.record
            let ended = r.endedBy.map { $0 == .exec ? "\"exec\"" : "\"exit\"" } ?? "null"
            return """
                {"parent":\(r.parent),"parent_comm":\(OutputFormat.jsonString(n.parentComm)),"child":\(r.child),\
                "child_comm":\(OutputFormat.jsonString(n.childComm)),"fork_ns":\(r.forkNanoseconds),\
                "latency_ns":\(r.latencyNanoseconds.map(String.init) ?? "null"),"mapped_pages":\(r.totalVMPages),\
                "ended_by":\(ended),"child_exit":\(n.childExit.map { OutputFormat.jsonString($0.description) } ?? "null"),"child_copies":\(n.childCopies),\
                "parent_copies_during":\(n.parentCopiesDuring.map(String.init) ?? "null"),\
                "copies_before_exec":\(r.copiesBeforeExec.map(String.init) ?? "null")}
                """
        }
        return "{\"schema_version\":1,\"page_size\":\(pageSize),\"forks\":[\(nodes.joined(separator: ","))]}\n"
    }
}
