-- Orthanc routing rule: send the CT series of every stable study to the triage receiver.
-- Install: "LuaScripts": ["/etc/orthanc/route-ct-to-triage.lua"] and, in "DicomModalities",
-- "triage": ["TRIAGE", "<triage host>", 11112] in orthanc.json. "StableAge" (seconds without a new
-- instance, default 60) decides when a study is complete. Only CT series go: the SEG and SR that triage
-- sends back into the study make it stable again, and must not travel back (the receiver also ignores
-- instances it already has). Tested by tests/inference/peers/test_push.py.
function OnStableStudy(studyId, tags, metadata)
  for _, series in ipairs(ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))) do
    if series['MainDicomTags']['Modality'] == 'CT' then
      RestApiPost('/modalities/triage/store', series['ID'])
    end
  end
end
