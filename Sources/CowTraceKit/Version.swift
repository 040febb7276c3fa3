/// cowtrace's version, written into recordings and metrics.
public enum CowTraceVersion {
    public static let current = "0.3.0"
}
