-- Binds a channel reference to its transaction unless it is bound already (SET NX GET,
-- Redis >= 7.0). KEYS[1] the reference's key (its own slot). ARGV[1] the binding
-- (<institution>|<va>|<amount>), ARGV[2] its lifetime (ms: retention's reference window,
-- docs/retention.md). Returns the earlier binding, or false when this one is new.
-- Mirrored by: store/calls.rs calls::Bind, filled by Store::bind_call (store/records.rs;
-- Store::bind runs it for hosted and passive payments), pay.lua's own SET NX GET on one Redis,
-- Store::void_reference (a reversal's void binding), Store::apply's SET NX from
-- Event.binding; domain::Binding is the record's format.
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'PX', ARGV[2])
