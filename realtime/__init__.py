"""talkcodec realtime: the pieces of a call, each its own module.

How a call runs, and where each step lives::

    talk-send                                               talk-recv
    signaling.call ---- websocket: challenge, offer+MAC ----> signaling.SignalingServer
                   <--- answer+MAC (or reject: wrong token, busy)
    peer.PeerLink  ==== WebRTC (DTLS/SRTP) ================= peer.PeerLink
      control channel (reliable): protocol.Hello/Accept/Refuse/Start/Ping/Pong/Report/SenderStats/Bye
      motion channel (unordered, no retransmission): codec.bitstream packets
                   [netem.Netem: loss/jitter test hook]     -> jitterbuffer.JitterBuffer (reorder,
      Opus audio track                                         late drop, conceal) -> 25 fps ticks
    ratecontrol.RateController <- protocol.Report (loss)
    clock.MediaClock stamps everything;                     clock.OffsetEstimator (ping/pong, as NTP)
                                                            turns stamps into latency

A browser takes part through the same signaling port: :mod:`webpage` serves
the page (``static/``) to plain HTTP requests, and the page authenticates
with the same HMAC challenge, as a viewer (``role: watch``) or as
``talk-send``'s camera.

Parsing (:mod:`protocol`, :mod:`signaling`) and the stateful logic
(:mod:`jitterbuffer`, :mod:`ratecontrol`, :mod:`clock`) are pure: they take
bytes or times and never read a clock or a socket, so they are tested
without a network. :mod:`peer` and the command-line tools own every task
and thread they start and stop them at the end of a call.
"""
