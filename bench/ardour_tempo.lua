-- Builds the Ardour 7 session for bench/ardour_tempo.sh (run by ardour7-lua, headless, Dummy
-- backend): a stereo audio track with the livediff VST3 before the fader and the tempo map
-- (one step at LD_CHANGE_BEAT quarters). The input clip is added to the saved session file
-- afterwards by bench/ardour_tempo.py (ardour7-lua cannot import audio files: only the
-- editor can). Settings come from the environment, set by the shell script.
local function env(name) return (assert(os.getenv(name), name .. " is not set")) end

AudioEngine:set_backend("None (Dummy)", "", "")
local s = assert(create_session(env("LD_SESSION_DIR"), env("LD_SESSION_NAME"), 48000), "create_session failed")

local tm = Temporal.TempoMap.write_copy()
local first, second = tonumber(env("LD_TEMPO_FROM")), tonumber(env("LD_TEMPO_TO"))
tm:set_tempo(Temporal.Tempo(first, first, 4), Temporal.timepos_t(0))
if second ~= first then
  tm:set_tempo(Temporal.Tempo(second, second, 4),
               Temporal.timepos_t.from_ticks(Temporal.ticks_per_beat * tonumber(env("LD_CHANGE_BEAT"))))
end
Temporal.TempoMap.update(tm)

local track = s:new_audio_track(2, 2, nil, 1, "input", ARDOUR.PresentationInfo.max_order,
                                ARDOUR.TrackMode.Normal, true):front()
local plugin = ARDOUR.LuaAPI.new_plugin(s, "livediff", ARDOUR.PluginType.VST3, "")
assert(not plugin:isnil(), "Ardour does not list the livediff VST3 (livediff install-plugin, then ardour-vst3-scanner)")
assert(track:add_processor_by_index(plugin, 0, nil, true) == 0, "could not add livediff to the track")

local wanted = {generator = tonumber(env("LD_GENERATOR")), mix = 100, seed = 7, preroll = 1}
local insert = plugin:to_insert()
local p = insert:plugin(0)
for i = 0, p:parameter_count() - 1 do
  local label = p:parameter_label(i)
  if wanted[label] ~= nil then
    ARDOUR.LuaAPI.set_processor_param(plugin, i, wanted[label])
    print(string.format("param %s = %s", label, tostring(ARDOUR.LuaAPI.get_processor_param(plugin, i))))
  end
end
s:save_state("")
close_session()
