-- Binds a channel reference to its transaction unless it is bound already (SET NX GET,
-- Redis >= 7.0). KEYS[1] the reference's key (its own slot). ARGV[1] the binding
-- (<institution>|<va>|<amount>). Returns the earlier binding, or false when this one is new.
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET')
