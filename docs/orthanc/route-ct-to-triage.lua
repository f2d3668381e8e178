-- Orthanc routing rule: send every stable study that holds a CT series to the triage receiver.
-- Install: "LuaScripts": ["/etc/orthanc/route-ct-to-triage.lua"] and, in "DicomModalities",
-- "triage": ["TRIAGE", "<triage host>", 11112] in orthanc.json. "StableAge" (seconds without a new
-- instance, default 60) decides when a study is complete. Tested by tests/inference/peers/test_push.py.
function OnStableStudy(studyId, tags, metadata)
  for _, series in ipairs(ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))) do
    if series['MainDicomTags']['Modality'] == 'CT' then
      RestApiPost('/modalities/triage/store', studyId)
      return
    end
  end
end
