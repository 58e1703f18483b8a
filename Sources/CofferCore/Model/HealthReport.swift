/// What cofferd says of itself when asked whether it is serving.
public struct HealthReport: Sendable, Equatable {
    /// False when the store has failed and requests that need it are refused.
    public var serving: Bool
    public var keyID: KeyID
    /// Why it is not serving; nil while serving.
    public var reason: String?

    public init(serving: Bool, keyID: KeyID, reason: String? = nil) {
        self.serving = serving
        self.keyID = keyID
        self.reason = reason
    }
}
