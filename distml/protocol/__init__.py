"""What travels between peers: serialization of user objects (:mod:`.serialize`), message
framing (:mod:`.wire`) and the authentication handshake (:mod:`.auth`)."""
